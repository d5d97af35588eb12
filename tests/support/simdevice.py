"""The firmware tests' devices: the simulator's SimDevice (simulator/device.py)
on a test's pty, its firmware installed the way a technician's tool installs
it (tools/flash.py: compiled with mpy-cross, copied, verified).

    main = install(tmp_path / "flash", cache_dir)
    dev = SimDevice(tmp_path / "flash", gw.path, device_id="EV-1", main=main).start()
    dev.press(5); dev.wait_screen("thanks")
    dev.kill()      # a power cut: SIGKILL, no goodbye
    dev.start()     # boots again from the same flash directory
"""

import json
import os
import pathlib

from simulator import device
from tools import flash as _flash
from tools.provision import identity_dir

# The device heap the tests run with (HCP_FW_HEAP overrides): the budget.
HEAP = os.environ.get("HCP_FW_HEAP", "64K")
_BUILT = {}  # cache dir -> the files of the bundle built there


def install(flash, cache_dir):
    """Install the sim board's firmware into a flash directory with
    tools/flash (built once per cache directory); the path of its main.py."""
    cache = pathlib.Path(cache_dir)
    files = _BUILT.get(cache)
    if files is None:
        files = _BUILT[cache] = _flash.build("sim", cache)
    _flash.install(cache, files, flash)
    return pathlib.Path(flash) / "main.py"


def SimDevice(flash, uart, heap=None, device_id=None, board=None, main=None):
    """simulator.device.SimDevice on the pty `uart`, its flash given the
    device id (as provisioning writes it) and, with `board`, a board.json of
    the test's own (replacing the one tools/flash wrote)."""
    if device_id:
        identity_dir(flash, device_id)
    if board is not None:
        (pathlib.Path(flash) / "board.json").write_text(json.dumps(board))
    return device.SimDevice(device_id or pathlib.Path(flash).name, flash, uart=uart, heap=heap or HEAP, main=main)
