"""Virtual boards (simulator/board.py) with the flashed firmware, against
the test gateway peer (tests/support/fakegw.py):

- the panel: the SSD1306 model's glass shows exactly what the firmware
  drew, view after view: the sim board's screen.pbm (the firmware's own
  framebuffer, written by hal_sim) and the board's (GDDRAM as the
  controller shows it, through firmware/ssd1306.py over I2C) are the same
  pixels, and the staff card is the card's bitmap to the pixel;
- buttons with real bounce: one press is one press, blips are none, a held
  key is stuck and no press;
- hardware faults: a panel missing (NAK) or a bus held low (timeout) at
  boot or later: ratings are taken, journaled and delivered, health says
  display_fault, and the picture comes back with the panel; a UART flooded
  past its ring: the drop is counted (rx_overruns), the link goes on.
"""

import json
import os
import signal
import time

import pytest
import zxingcpp
from PIL import Image
from support.fakegw import FakeGateway

from simulator.board import BoardDevice
from simulator.device import SimDevice
from tests import test_firmware_device as device_tests
from tests.test_firmware_boards import BoardRig
from tools import card, flash
from tools.provision import write_key_dir

KEY = device_tests.KEY
CONFIG = device_tests.CONFIG
fw_cache = device_tests.fw_cache


def _until(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            assert got, "no %s within %.1f s" % (what, timeout)
            return got
        time.sleep(0.01)


class _Cable:
    """simulator.device.SimDevice's line, for a device on a test peer's pty."""

    def __init__(self, path):
        self.device_path = path

    def flush_device_input(self):
        pass


@pytest.fixture
def twins(tmp_path):
    """The same device (id, key, no binding yet) as a sim board and as a
    virtual ESP32, each on its own test gateway."""
    out = []
    for kind in ("sim", "esp32"):
        gw = FakeGateway(config=CONFIG)
        gw.set_key(KEY)
        fdir = tmp_path / kind / "flash"
        flash.flash_dir(kind, fdir)
        write_key_dir(fdir, KEY)
        (fdir / "device.json").write_text(json.dumps({"device_id": "EV-TWIN"}))
        if kind == "sim":
            dev = SimDevice("sim", fdir, _Cable(gw.path), main=fdir / "main.py")
        else:
            dev = BoardDevice("esp32", fdir, uart=gw.path, board="esp32", workdir=tmp_path / kind / "board",
                              seed=1)
        dev.start()
        gw.wait_for("hello", timeout=10)
        out.append((gw, dev))
    yield out
    for gw, dev in out:
        dev.stop()
        gw.close()


def _same_picture(twins, view, inv=""):
    """Both show `view` (for `inv`) and their pixels are the same."""
    for _, dev in twins:
        _until(lambda d=dev: d.state() == view and d.showing() == inv, 5, "view %s" % view)
    (_, sim), (_, board) = twins

    _until(lambda: _bits(sim.screen_image()) == _bits(board.screen_image()), 3,
           "the same pixels in view %s" % view)
    return board.screen_image()


def _bits(img):
    """1 for each lit pixel (white, as a person sees the panel), row by row."""
    return [1 if v else 0 for v in img.convert("1").get_flattened_data()]


def _lit(img):
    return sum(_bits(img))


def test_the_panel_shows_exactly_what_the_firmware_drew(twins):
    (gw_s, sim), (gw_b, board) = twins
    assert _lit(_same_picture(twins, "unpaired")) > 200  # title bar, id, version
    for gw, _ in twins:
        gw.command({"type": "bind", "staff_id": "S1024", "window": "A05"})
    _same_picture(twins, "idle")
    # The staff card: the gateway's bitmap, drawn full screen.
    url = "HTTPS://HCP.EXAMPLE/E/S1024"
    img = card.render_card("王小明", "S1024", "A05", url, flash.board_settings("esp32")["display"])
    w, h, data = card.to_mono_hlsb(img)
    for gw, _ in twins:
        for off in range(0, len(data), 512):
            gw.command({"type": "bitmap", "slot": 0, "width": w, "height": h, "offset": off,
                        "data": data[off:off + 512]})
    want = _bits(img)
    assert sum(want) > 1000
    _until(lambda: _bits(board.screen_image()) == want, 5, "the card on the glass")
    shown = _same_picture(twins, "idle")
    big = shown.convert("L").resize((w * 4, h * 4), Image.NEAREST)
    assert [r.text for r in zxingcpp.read_barcodes(big)] == [url]  # read off the emulated panel
    # The rating views, step by step.
    for gw, _ in twins:
        gw.command({"type": "invite", "invitation": "INV-1", "cases": ["C1", "C2"], "timeout_s": 30})
    _same_picture(twins, "invited", "INV-1")
    for key, view in ((2, "reasons"), (5, "reasons"), (1, "reasons"), (4, "reasons"), (1, "thanks")):
        for _, dev in twins:
            dev.press(key)
        _same_picture(twins, view, "INV-1")
    for gw, _ in twins:
        ev = gw.wait_for("event", lambda m: m["invitation"] == "INV-1")
        assert (ev["score"], ev["reasons"]) == (2, ["R1", "R6"])


@pytest.fixture(params=("esp32", "pico"))
def rig(request, tmp_path, fw_cache):
    r = BoardRig(tmp_path, fw_cache, kind=request.param)
    r.dev.wait_screen("idle")
    yield r
    r.close()


def _events(rig, n):
    try:
        evs = [rig.event(lambda m, i=i: m["event_seq"] == i) for i in range(1, n + 1)]
    except AssertionError:
        raise AssertionError("events: %r\n%s" % ([(m["event_seq"], m["score"]) for m in rig.gw.received("event")],
                                                  rig.dev.output()[-3000:])) from None
    time.sleep(0.5)
    # n events and no more: counted by id (a retransmission, when an ACK
    # came late for a VM the loaded host ran slowly, is the same event again)
    ids = sorted({(m["boot"], m["event_seq"]) for m in rig.gw.received("event")})
    assert len(ids) == n, [(m["event_seq"], m["kind"], m["score"]) for m in rig.gw.received("event")]
    return evs


def test_bounce_one_press_is_one_press(rig):
    b = rig.dev.board
    stars = [5, 4, 3, 2, 1, 3, 5, 1]
    for s in stars:
        # 1-8 ms of chatter on press and on release; held firmly (a VM the
        # host does not run for longer than a press misses it, as a board's
        # loop stalled that long would)
        b.press(s, hold_ms=250)
    # The worst contact: 8 ms of make-and-break every millisecond, both ways.
    t0 = b._slot()
    lv = b._level
    edges = [(t0 + i, lv(i % 2 == 0)) for i in range(9)]
    edges += [(t0 + 208 + i, lv(i % 2 == 1)) for i in range(9)]
    b._gesture(3, edges, t0 + 216)
    evs = _events(rig, len(stars) + 1)
    assert [(e["kind"], e["score"]) for e in evs] == [("uninvited", s) for s in stars + [3]]


def test_bounce_blips_are_no_press(rig):
    b = rig.dev.board
    b.glitch(3, 2)
    b.glitch(4, 20)  # shorter than the 30 ms debounce
    b.press(2)
    evs = _events(rig, 1)
    assert (evs[0]["score"], evs[0]["event_seq"]) == (2, 1)


def test_held_key_is_stuck_not_presses(rig):
    b = rig.dev.board
    b.down(4)  # 4★: button 1 from the left
    h = rig.gw.wait_for("health", lambda m: m["stuck"] == 1 << 1, timeout=5)
    assert h["stuck"] == 2
    t0 = b._slot()  # a worn contact breaks for 2 ms while it is held
    b._gesture(4, [(t0, b._level(False)), (t0 + 2, b._level(True))], t0 + 2)
    time.sleep(0.6)
    assert rig.gw.received("health")[-1]["stuck"] == 2
    b.up(4)  # chatter on release too
    rig.gw.wait_for("health", lambda m: m["stuck"] == 0, start=rig.gw.mark(), timeout=5)
    b.press(4)
    evs = _events(rig, 1)
    assert (evs[0]["score"], evs[0]["event_seq"]) == (4, 1)  # the held key made none


@pytest.mark.parametrize("fault", ["missing", "stuck"])
def test_panel_fault_ratings_go_on(tmp_path, fw_cache, fault):
    """No panel at power-on (NAK: ENODEV on the ESP32), or its bus held low
    later (ETIMEDOUT): the firmware journals, thanks and sends ratings, and
    health says so; the panel back, the picture is back."""
    r = BoardRig(tmp_path, fw_cache, panel="missing" if fault == "missing" else "present")
    gw, dev = r.gw, r.dev
    try:
        if fault == "stuck":
            dev.wait_screen("idle")
            dev.board.set_panel("stuck")
        h = gw.wait_for("health", lambda m: m["display_fault"] == 1, timeout=5)
        assert h["journal_depth"] == 0
        before = dev.board.panel.transactions
        r.invite("INV-F")  # the console still names the prompt nobody can see
        dev.press(5)
        dev.wait_screen("thanks")
        ev = gw.wait_for("event", lambda m: m["invitation"] == "INV-F")
        assert (ev["kind"], ev["score"]) == ("rating", 5)
        gw.wait_for("health", lambda m: m["journal_depth"] == 0 and m["display_fault"] == 1,
                    start=gw.mark(), timeout=5)
        assert dev.board.panel.transactions == before  # nothing reached the glass
        assert "Traceback" not in dev.output()
        dev.board.set_panel("present")
        gw.wait_for("health", lambda m: m["display_fault"] == 0, start=gw.mark(), timeout=5)
        # (the simulator takes the panel's bytes on its own thread)
        _until(lambda: dev.board.panel.on and (dev.dir / "screen.pbm").exists()
               and _lit(dev.screen_image()) > 50, 5, "the picture back")
        assert dev.alive()
    finally:
        r.close()


def test_uart_flood_past_the_ring_is_counted_and_the_link_goes_on(rig):
    """The firmware stalls (SIGSTOP: a long flash write, say) while 3 KB
    come in: the 1 KB ring keeps the first KB, the rest is dropped, as on
    the ports; health counts it, the link carries on."""
    b = rig.dev.board
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        os.write(rig.gw.master, bytes(range(1, 256)) * 12 + b"\x00")
        time.sleep(0.4)  # the line would carry it in 0.27 s
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    h = rig.gw.wait_for("health", lambda m: m["rx_overruns"] >= 1, start=rig.gw.mark(), timeout=5)
    assert h["display_fault"] == 0
    _until(lambda: b.uart_dropped > 1500, 3, "the emulator's count of dropped bytes")
    rig.invite("INV-U")
    rig.dev.press(4)
    assert rig.event(lambda m: m["invitation"] == "INV-U")["score"] == 4
    assert rig.dev.alive()
