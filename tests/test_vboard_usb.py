"""A technician's path on a virtual ESP32 board, through its USB port:
`hcp tool flash --board esp32 --port <pty>` (mpremote on the board's REPL,
every file verified on the board, then a reset), `hcp tool provision --port`
(the key over USB, a reset), `hcp tool pair`, against a running hall
gateway. The board starts with an empty flash, as it comes from the
factory with MicroPython on it; it then boots the new code, pairs, shows
the staff card (its QR code read with zxing-cpp from the emulated panel's
glass, not from the firmware's buffer), takes a rating that reaches the
upstream, and is flashed again over its running firmware: identity, key,
binding and boot count survive, and it boots the new code again."""

import json
import os
import subprocess
import time

import zxingcpp
from PIL import Image
from support.gwharness import HCP

from gateway import settings as gwsettings
from simulator import upstream
from simulator.board import BoardDevice
from simulator.hall import SimHall, Window
from simulator.wire import Line


def _run(*args, timeout=180):
    out = subprocess.run([HCP, *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("no %s within %.0f s" % (what, timeout))


def _qr(img):
    big = img.convert("L").resize((img.width * 4, img.height * 4), Image.NEAREST)
    return [r.text for r in zxingcpp.read_barcodes(big)]


def test_flash_provision_pair_over_usb(tmp_path):
    hall = SimHall(tmp_path / "hall", devices=0, seed=5, pair=False, board="esp32")
    hall.start_servers()
    try:
        line = hall.relay.add(Line("vb", rate=0.0, seed=1))
        os.symlink(line.gateway_path, hall.ttydir / "vb")
        dev = BoardDevice("vb", tmp_path / "board" / "flash", line, board="esp32", workdir=tmp_path / "board")
        w = Window(0, dev, "A09", "S9", "王五")
        w.device_id = dev.device_id
        hall.windows.append(w)
        hall._wait_ports_open([w], timeout=15)
        dev.start()
        _until(lambda: b">>> " in (dev.dir / "console.log").read_bytes(), 10, "REPL of an empty board")
        usb = dev.usb_path

        out = _run("tool", "flash", "--board", "esp32", "--port", usb)
        n = len(os.listdir(dev.flash / "firmware"))
        assert "verified" in out.stderr and "reset: the board boots the new code" in out.stderr, out.stderr
        assert n >= 10
        # The new code boots: its hello reaches the gateway, which holds no key for it yet.
        _until(lambda: "hcp-fw" in dev.output(), 15, "firmware boot")
        _until(lambda: any(d["device_id"] == dev.device_id for d in
                           hall.api.call("GET", "/api/devices")[1].get("unprovisioned") or ()),
               15, "hello of the unprovisioned board")

        out = _run("tool", "provision", "--port", usb, "--board", "esp32", "--config", str(hall.config_path))
        assert dev.device_id in out.stdout and "restarted with its key" in out.stdout
        key = (dev.flash / "key").read_text()
        assert len(bytes.fromhex(key)) == 32 and key not in out.stdout + out.stderr

        _run("tool", "pair", "--staff", "S9", "--name", "王五", "--window", "A09", "--device", dev.device_id,
             "--config", str(hall.config_path))
        assert dev.wait_state("idle", timeout=20) == "idle", dev.output()[-2000:]
        url = gwsettings.DEFAULT_URL_TEMPLATE.format(staff_id="S9")
        # The card follows the binding in 512-byte parts: until it is whole
        # the idle view shows the staff id in text.
        assert _until(lambda: _qr(dev.screen_image()), 15, "a QR code on the panel") == [url]
        assert hall.api.call("GET", "/api/devices/%s" % dev.device_id)[1]["key_confirmed"]

        status, inv = hall.invite(w, ["P-1"])
        assert status == 200, inv
        assert dev.wait_state("invited", timeout=10) == "invited"
        dev.press(4)
        assert dev.wait_state("thanks", timeout=10) == "thanks"
        rec = _until(lambda: [r for r in upstream.records(hall.receivers["http"].db)
                              if r.get("windowId") == "A09"], 20, "the rating upstream")
        assert rec[0]["satisfaction"] == 4 and rec[0]["deviceId"] == dev.device_id

        # Flashed again over its running firmware: its state stays, it boots again.
        boot = int((dev.flash / "boot").read_text())
        _run("tool", "flash", "--board", "esp32", "--port", usb)
        _until(lambda: (dev.flash / "boot").exists() and int((dev.flash / "boot").read_text()) > boot,
               15, "a new boot")
        assert dev.wait_state("idle", timeout=15) == "idle"
        assert json.loads((dev.flash / "device.json").read_text())["device_id"] == dev.device_id
        assert (dev.flash / "key").read_text() == key
        assert json.loads((dev.flash / "pair.json").read_text())["staff_id"] == "S9"
    finally:
        hall.stop()
