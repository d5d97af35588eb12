"""One driver of a firmware VM (issue 13, item 4a): simulator/device.py's
SimDevice, which the simulated hall and the firmware tests both use; the
tests install the firmware through tools/flash, as a technician's tool
does (its manifest, board.json and verified .mpy files)."""

import json
import pathlib

import pytest
from support.fakegw import FakeGateway
from support.simdevice import SimDevice, install

from simulator import device
from tools import flash

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_only_the_simulator_starts_the_firmware_vm():
    starters = sorted(p.relative_to(ROOT).as_posix()
                      for d in ("simulator", "tests", "bench", "tools", "gateway") for p in (ROOT / d).rglob("*.py")
                      if p != pathlib.Path(__file__).resolve() and '"--uart"' in p.read_text(encoding="utf-8"))
    assert starters == ["simulator/device.py"]


def test_tests_install_through_tools_flash(tmp_path):
    main = install(tmp_path / "flash", tmp_path / "cache")
    manifest = json.loads((tmp_path / "flash" / flash.MANIFEST).read_text())
    assert main == tmp_path / "flash" / "main.py" and "main.py" in manifest and "firmware/link.mpy" in manifest
    assert "board.json" in manifest and "protocol/messages.mpy" not in manifest  # host-only stays off
    again = install(tmp_path / "flash2", tmp_path / "cache")  # built once, installed again
    assert json.loads((again.parent / flash.MANIFEST).read_text()) == manifest


def test_a_test_device_is_the_simulators(tmp_path):
    gw = FakeGateway(config={"invite_timeout_s": 10, "heartbeat_s": 1, "stuck_ms": 400,
                             "reasons_version": "t1", "reasons": []})
    try:
        main = install(tmp_path / "flash", tmp_path / "cache")
        dev = SimDevice(tmp_path / "flash", gw.path, device_id="EV-SD", main=main)
        assert type(dev) is device.SimDevice and dev.uart == gw.path and dev.heap == "64K"
        with pytest.raises(device.DeviceDown):  # no power: the tests' AssertionError, the actors' error
            dev.press(5)
        assert issubclass(device.DeviceDown, AssertionError) and issubclass(device.DeviceDown, device.SimDeviceError)
        dev.start()
        assert gw.wait_for("hello")["device_id"] == "EV-SD"
        dev.wait_screen("unpaired")
        assert len(dev.pixels()) == dev.screen_image().size[1]
        dev.kill()
        assert not dev.alive() and dev.power_cuts == 1 and "Traceback" not in dev.output()
    finally:
        gw.close()
    with pytest.raises(ValueError):
        device.SimDevice("x", tmp_path / "f", line=None, uart=None)
