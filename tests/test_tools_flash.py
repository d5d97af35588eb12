"""Flashing a sim device into a directory: compiled with the real mpy-cross,
loadable by the real MicroPython VM, verified, and a re-flash keeps every
file of the device's state."""

import hashlib
import json
import subprocess

import pytest

from protocol import messages
from tools import flash
from tools.micropython import find_micropython


def test_flash_dir_compiles_verifies_and_loads(tmp_path):
    progress = []
    files = flash.flash_dir("sim", tmp_path / "dev", progress=progress.append)
    assert "main.py" in files and "protocol/tx.mpy" in files and "firmware/rating.mpy" in files
    # Host-only modules stay home, the general codec too (the device has its own).
    assert "protocol/examples.mpy" not in files and "protocol/messages.mpy" not in files
    assert json.loads((tmp_path / "dev" / "board.json").read_text())["name"] == "sim"
    assert json.loads((tmp_path / "dev" / "code.json").read_text()) == files
    for rel, digest in files.items():
        assert hashlib.sha256((tmp_path / "dev" / rel).read_bytes()).hexdigest() == digest
    assert any("verified" in line for line in progress)
    # The VM imports the compiled device codec and packs the bytes CPython's
    # general codec encodes.
    msg = {"type": "done", "session": 1, "seq": 1, "device_id": "EV-1", "ref_seq": 9}
    code = ("import sys, binascii; sys.path.insert(0, %r)\n"
            "from protocol import tx\n"
            "print(binascii.hexlify(tx.frame(4, 1, 1, ('EV-1', 9))).decode())" % str(tmp_path / "dev"))
    out = subprocess.run([find_micropython(), "-X", "heapsize=64K", "-c", code], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == messages.encode(msg).hex()


def test_reflash_keeps_state_and_drops_stale_code(tmp_path):
    dev = tmp_path / "dev"
    flash.flash_dir("sim", dev)
    state = {"device.json": '{"device_id": "EV-1"}', "pair.json": '{"staff_id": "S1"}', "boot": "7",
             "journal": "\x01\x02journal bytes"}
    for name, text in state.items():
        (dev / name).write_text(text)
    (dev / "firmware" / "old.mpy").write_bytes(b"old")
    manifest = json.loads((dev / "code.json").read_text())
    manifest["firmware/old.mpy"] = "x"
    (dev / "code.json").write_text(json.dumps(manifest))
    (dev / "protocol" / "tx.mpy").write_bytes(b"corrupted by a bad earlier flash")
    flash.flash_dir("sim", dev)
    for name, text in state.items():
        assert (dev / name).read_text() == text
    assert not (dev / "firmware" / "old.mpy").exists()
    files = json.loads((dev / "code.json").read_text())
    assert hashlib.sha256((dev / "protocol" / "tx.mpy").read_bytes()).hexdigest() == files["protocol/tx.mpy"]


def test_flash_dir_of_a_virtual_board(tmp_path):
    """A directory can be a virtual board's flash (simulator/board.py): the
    board's bundle, hal_machine and its panel driver in it, board.json its."""
    files = flash.flash_dir("pico", tmp_path / "b")
    assert {"firmware/hal_machine.mpy", "firmware/ssd1306.mpy", "board.json"} <= set(files)
    assert json.loads((tmp_path / "b" / "board.json").read_text())["name"] == "pico"


def test_clear_refusals_change_nothing(tmp_path, monkeypatch):
    with pytest.raises(flash.FlashError, match="no board 'nope'.*known boards"):
        flash.flash_dir("nope", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    monkeypatch.setattr(flash, "mpy_cross_version", lambda: (6, 1))
    with pytest.raises(flash.FlashError, match="loads .mpy v6.3 but mpy-cross emits v6.1"):
        flash.flash_dir("sim", tmp_path / "c")
    assert not (tmp_path / "c").exists()
