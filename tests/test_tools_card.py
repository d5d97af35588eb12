"""The staff card a technician sends at pairing: the QR code on it must decode,
from the very pixels, to the staff account's URL — or pairing must refuse."""

import tomllib
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from tools import card

BOARDS = tomllib.loads((Path(__file__).resolve().parent.parent / "boards.toml").read_text())


def _decode(img):
    # Phones see the panel larger than its pixels: scale up 4x, nearest neighbour.
    big = img.convert("L").resize((img.width * 4, img.height * 4), Image.NEAREST)
    return [r.text for r in zxingcpp.read_barcodes(big)]


def test_card_qr_decodes_to_the_url_on_the_sim_board():
    url = "HTTPS://HCP.EXAMPLE/E/S1024"
    img = card.render_card("王小明", "S1024", "A05", url, BOARDS["sim"]["display"])
    assert img.size == (128, 64)
    assert _decode(img) == [url]
    plan = card.plan_qr(url, BOARDS["sim"]["display"], max_width=128 - 64)
    assert plan.scale == 2 and plan.side == 58  # DESIGN §3: version 2, 58 px at 2 px/module
    # The text side has lit pixels (the name was drawn), the QR has a lit quiet zone.
    w, h, data = card.to_mono_hlsb(img)
    assert (w, h, len(data)) == (128, 64, 16 * 64)
    assert card.from_mono_hlsb(w, h, data).tobytes() == img.tobytes()
    assert any(img.getpixel((x, y)) for x in range(62, 128) for y in range(0, 16))


def test_a_lowercase_url_gets_a_bigger_code_that_still_decodes():
    # Byte mode: version 5+, so only 1 px (0.43 mm) per module on the sim panel.
    url = "https://www.zjzwfw.gov.cn/zjservice/evaluation/staff.do?account=wangxiaoming-330100&window=A05"
    img = card.render_card("王小明", "S1024", "A05", url, BOARDS["sim"]["display"])
    assert card.plan_qr(url, BOARDS["sim"]["display"], max_width=64).scale == 1
    assert _decode(img) == [url]


def test_a_url_that_cannot_fit_says_why():
    url = "https://www.zjzwfw.gov.cn/evaluation?" + "&".join("k%d=value%d" % (i, i) for i in range(30))
    with pytest.raises(card.CardError) as err:
        card.render_card("王小明", "S1024", "A05", url, BOARDS["sim"]["display"])
    msg = str(err.value)
    assert "shorter" in msg and "upper-case alphanumeric" in msg


def test_small_panel_refuses_modules_under_0_4_mm():
    url = "HTTPS://HCP.EXAMPLE/E/S1024"
    with pytest.raises(card.CardError) as err:
        card.plan_qr(url, BOARDS["pico-096"]["display"], max_width=64)
    assert "0.4 mm" in str(err.value)


def test_largest_whole_scale_is_used():
    # A short URL on a big panel gets more than 2 px per module.
    display = {"width": 256, "height": 128, "width_mm": 110.0, "height_mm": 55.0}
    plan = card.plan_qr("HTTPS://H.EX/E/1", display, max_width=128)
    assert plan.scale == 128 // (plan.modules + 4)
    img = card.render_card("李四", "7", "B1", "HTTPS://H.EX/E/1", display)
    assert _decode(img) == ["HTTPS://H.EX/E/1"]


def test_text_bitmap():
    img = card.render_text("请评价", 128)
    assert img.size == (128, 16) and any(img.tobytes())
