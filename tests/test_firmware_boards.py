"""The firmware's scenarios on the virtual ESP32 and RP2040 boards.

The scenarios are tests/test_firmware_device.py's and
tests/test_firmware_powercut.py's own, run here with a rig whose device is a
simulator/board.BoardDevice: the bundle `hcp tool flash --board esp32|pico`
builds (tools/flash.build: firmware/hal_machine.py and firmware/ssd1306.py,
the driver that is flashed) on the MicroPython unix port, with
simulator/vboard's `machine`: buttons on GPIO levels with contact bounce,
the link on the board's UART (a pty, its ring filled at the baud rate),
the screen read back from the SSD1306 model's glass (simulator/panel.py),
the view from the board's console. The firmware has its 64K heap (the
emulator's own is held apart: simulator/vboard/_boot.py).
"""

import functools
import json
import time

import pytest
from support.fakegw import FakeGateway

from simulator.board import BoardDevice
from tests import test_firmware_device as device_tests
from tests import test_firmware_powercut as powercut_tests
from tools import flash
from tools.provision import write_key_dir

BOARDS = ("esp32", "pico")
_BUNDLES = {}

fw_cache = device_tests.fw_cache


def install(kind, flashdir, cache, board=None):
    """The bundle of board `kind` into `flashdir` as `hcp tool flash` puts
    it (built once per session); `board` overrides parts of its board.json."""
    if kind not in _BUNDLES:
        out = cache / ("bundle-" + kind)
        _BUNDLES[kind] = (out, flash.build(kind, out))
    out, files = _BUNDLES[kind]
    flash.install(out, files, flashdir)
    if board:
        path = flashdir / "board.json"
        settings = json.loads(path.read_text())
        for k, v in board.items():
            settings[k] = dict(settings.get(k) or {}, **v) if isinstance(v, dict) else v
        path.write_text(json.dumps(settings))


class BoardRig(device_tests.Rig):
    """tests/test_firmware_device.Rig with a virtual board for a device."""

    def __init__(self, tmp_path, cache, board=None, paired=True, keyed=True, auto_ack=True, heap=None,
                 kind="esp32", device_id="EV-T1", panel="present"):
        self.gw = FakeGateway(config=device_tests.CONFIG, auto_ack=auto_ack)
        fdir = tmp_path / "flash"
        install(kind, fdir, cache, board)
        if keyed:  # what `hcp tool provision` writes over USB
            write_key_dir(fdir, device_tests.KEY)
            self.gw.set_key(device_tests.KEY)
        if paired:
            (fdir / "pair.json").write_text(json.dumps({"staff_id": "S001", "window": "W07"}))
        (fdir / "device.json").write_text(json.dumps({"device_id": device_id}))
        self.dev = BoardDevice(device_id, fdir, uart=self.gw.path, board=kind, heap=heap or "64K",
                               workdir=tmp_path / "board", seed=len(str(tmp_path)))
        if panel != "present":
            self.dev.board.set_panel(panel)  # not there at power-on
        self.dev.start()
        self.hello = self.gw.wait_for("hello", timeout=10)

    def invite(self, inv, cases=("C1",), timeout_s=10):
        self.gw.command({"type": "invite", "invitation": inv, "cases": list(cases),
                         "timeout_s": timeout_s})
        # The board names the invitation on its console (screen.txt line 2).
        deadline = time.monotonic() + 5.0
        while self.dev.screen_text() != "invited\n%s\n" % inv:
            assert time.monotonic() < deadline, self.dev.screen_text()
            time.sleep(0.005)

    def close(self):
        self.dev.stop()
        self.gw.close()


@pytest.fixture(params=BOARDS)
def kind(request):
    return request.param


@pytest.fixture
def rig(tmp_path, fw_cache, kind):
    r = BoardRig(tmp_path, fw_cache, kind=kind)
    r.dev.wait_screen("idle")
    yield r
    r.close()


# The scenarios of the firmware's Done-when, as they are written there.
test_good_rating_thanks_after_journal_then_idle = device_tests.test_good_rating_thanks_after_journal_then_idle
test_bad_rating_with_reasons = device_tests.test_bad_rating_with_reasons
test_bad_rating_without_reason_is_never_sent = device_tests.test_bad_rating_without_reason_is_never_sent
test_batch_invitation_one_rating = device_tests.test_batch_invitation_one_rating
test_timeout_unrated_and_new_invite_closes_old = device_tests.test_timeout_unrated_and_new_invite_closes_old
test_uninvited_presses_are_audit_not_ratings = device_tests.test_uninvited_presses_are_audit_not_ratings
test_stuck_button_reported_not_pressed = device_tests.test_stuck_button_reported_not_pressed
test_retransmit_after_lost_ack = device_tests.test_retransmit_after_lost_ack


def test_unpaired_then_pairing_and_bitmaps(tmp_path, fw_cache, kind, monkeypatch):
    """The pairing scenario (a bitmap drawn where it belongs, settings kept
    across a restart), its rig a board's."""
    monkeypatch.setattr(device_tests, "Rig", functools.partial(BoardRig, kind=kind))
    device_tests.test_unpaired_then_pairing_and_bitmaps(tmp_path, fw_cache)


def test_gateway_sized_frames_at_64k(tmp_path, fw_cache, kind, monkeypatch):
    """The gateway's real pairing traffic (full-screen bitmaps in 512-byte
    parts, 20 reasons, a 40-case batch) in the firmware's 64K on a board."""
    monkeypatch.setattr(device_tests, "Rig", functools.partial(BoardRig, kind=kind))
    device_tests.test_gateway_sized_frames_at_64k(tmp_path, fw_cache)


@pytest.fixture
def cut_rig(tmp_path, fw_cache, kind):
    gw = FakeGateway(config={"invite_timeout_s": 10, "heartbeat_s": 1, "stuck_ms": 2000,
                             "reasons_version": "t1", "reasons": []})
    gw.set_key(powercut_tests.KEY)
    fdir = tmp_path / "flash"
    install(kind, fdir, fw_cache)
    write_key_dir(fdir, powercut_tests.KEY)
    (fdir / "pair.json").write_text(json.dumps({"staff_id": "S001", "window": "W01"}))
    (fdir / "device.json").write_text(json.dumps({"device_id": "EV-CUT"}))
    # Quick taps (40-60 ms, still well over the 30 ms debounce): the cuts
    # come 0-0.4 s after boot, and a rating must complete now and then.
    dev = BoardDevice("EV-CUT", fdir, uart=gw.path, board=kind, heap="64K", workdir=tmp_path / "board",
                      hold_ms=(40, 60))
    # The scenario waits up to 3 s for an uninvited press's event; a board
    # cut meanwhile sends none: stop waiting once it has no power (else the
    # 50 cuts spend most of their time waiting for the dead).
    wait_for = gw.wait_for

    def wait_for_the_living(mtype, where=None, timeout=5.0, start=0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return wait_for(mtype, where, timeout=0.1, start=start)
            except AssertionError:
                if not dev.alive() or time.monotonic() > deadline:
                    raise

    gw.wait_for = wait_for_the_living
    yield gw, dev
    dev.stop()
    gw.close()


def test_power_cuts_lose_and_duplicate_nothing(cut_rig, monkeypatch):
    """Power cut at random moments while citizens rate (the sim board's test,
    tests/test_firmware_powercut.py), on the boards. A finger's press takes
    a tenth of a second where the sim board's `press` takes none, so fewer
    ratings complete between cuts (9-15 of 30 here): 50 cuts, not 30."""
    monkeypatch.setattr(powercut_tests, "CUTS", 50)
    powercut_tests.test_power_cuts_lose_and_duplicate_nothing(cut_rig)
