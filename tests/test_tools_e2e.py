"""Issue 6's check, end to end: a sim evaluator flashed into a directory and
booted under the real MicroPython VM pairs through `hcp tool pair`; the QR
code decoded from its real screen pixels is its staff member's URL; one
code, one account holds through a refusal and a `--replace`; a re-flash
keeps the binding and the journal."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
import zxingcpp
from PIL import Image

from simulator import upstream
from simulator.hall import DEFAULT_HEAP, SimHall
from tools import flash

HCP = str(pathlib.Path(sys.executable).parent / "hcp")
# The 64K budget (simulator/hall.py DEFAULT_HEAP); HCP_TEST_HEAP tries another.
HEAP = os.environ.get("HCP_TEST_HEAP", DEFAULT_HEAP)


def qr_text(dev):
    img = dev.screen_image()
    big = img.convert("L").resize((img.width * 4, img.height * 4), Image.NEAREST)
    return [r.text for r in zxingcpp.read_barcodes(big)]


def tool(hall, *args, check=True):
    proc = subprocess.run([HCP, "tool", *args, "--config", str(hall.config_path)], capture_output=True,
                          text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def hall(tmp_path):
    # Devices come up unpaired: the technician pairs them below.
    h = SimHall(tmp_path, devices=2, seed=7, heap=HEAP, pair=False)
    h.start()
    yield h
    h.stop()


def test_pair_show_replace_and_reflash(hall, tmp_path):
    a, b = hall.windows
    assert a.device.wait_state("unpaired", 10) == "unpaired"
    out = tool(hall, "pair", "--staff", "S2001", "--name", "王小明", "--window", "A05", "--device", a.device_id)
    url = "HTTPS://HALL.EXAMPLE/E/S2001"
    assert url in out.stdout
    assert wait(lambda: a.device.state() == "idle")
    assert wait(lambda: qr_text(a.device) == [url]), "QR on the real screen: %r" % qr_text(a.device)

    # One code, one account: the same staff account on device B is refused, with the binding shown.
    refused = tool(hall, "pair", "--staff", "S2001", "--name", "王小明", "--window", "A06", "--device", b.device_id,
                   check=False)
    assert refused.returncode != 0 and "S2001" in refused.stderr and a.device_id in refused.stderr
    assert b.device.state() == "unpaired"

    # --replace moves it: B shows the code, A says it is not paired.
    tool(hall, "pair", "--staff", "S2001", "--name", "王小明", "--window", "A06", "--device", b.device_id,
         "--replace")
    assert wait(lambda: b.device.state() == "idle" and qr_text(b.device) == [url])
    assert wait(lambda: a.device.state() == "unpaired")
    assert qr_text(a.device) == []
    audit = hall.api.call("GET", "/api/audit")[1]["audit"]
    assert any(e["action"] == "replace" for e in audit)

    listed = json.loads(tool(hall, "list", "--json").stdout)
    assert {d["device_id"]: d["staff_id"] for d in listed} == {a.device_id: "", b.device_id: "S2001"}
    png = tmp_path / "b.png"
    shown = tool(hall, "show", "--device", b.device_id, "--png", str(png), "--dir", str(b.device.flash))
    assert "S2001" in shown.stdout and png.exists()

    # A rating journaled while the gateway is down survives a re-flash of the device.
    status, _ = hall.api.call("POST", "/api/invitations", {"window": "A06", "cases": [{"projectNo": "P-REFLASH"}]})
    assert status in (200, 201)
    assert b.device.wait_state("invited", 5) == "invited"
    hall.gateway.kill9()  # no ACK can come now: the rating stays in the journal
    b.device.press(4)
    assert b.device.wait_state("thanks", 5) == "thanks"
    b.device.power_cut()
    before = (b.device.flash / "journal").read_bytes()
    flash.flash_dir("sim", b.device.flash)
    assert (b.device.flash / "journal").read_bytes() == before
    b.device.start()
    assert wait(lambda: b.device.state() == "idle")
    assert qr_text(b.device) == [url]  # binding kept
    hall.gateway.start()
    assert hall.api.wait_up()
    assert wait(lambda: any(r.get("projectNo") == "P-REFLASH" and r.get("satisfaction") == 4
                            for r in upstream.records(hall.receivers["http"].db)), 20)
