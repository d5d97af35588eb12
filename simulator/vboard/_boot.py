# Power-on of a virtual board (simulator/board.py starts the VM with it,
# `micropython -X heapsize=64K -i _boot.py`): what the real port does before
# the REPL. `machine` first (it opens the host side of every wire), then
# the board's flash mounted at "/" as the ESP32 and RP2040 ports mount
# theirs, boot.py and main.py run from it, and the REPL after (-i), which
# simulator/board.py offers on a pty as the board's USB port.

import gc
import os
import sys

import machine


class _Flash(os.VfsPosix):
    def rename(self, a, b):
        # VfsPosix with a root joins both paths in one buffer, the second
        # over the first: relative paths (the cwd is the root) are passed on.
        return super().rename(a.lstrip("/"), b.lstrip("/"))


os.umount("/")
os.mount(_Flash(machine._wire["flash"]), "/")
os.chdir("/")
sys.path[:] = ["", ".frozen", "/lib"]
del sys.argv[:]
del _Flash
# The firmware's heap is its budget: on a board `machine` is in ROM, here it
# is in the VM's heap, which simulator/board.py makes that much larger. What
# the emulator left unused is held here, so the firmware starts with as
# much free as it has at the budget on the sim board ("budget" in the
# wiring: the free heap at the start of a script in a VM of that size).
gc.collect()
_spare = gc.mem_free() - int(machine._wire.get("budget") or 0) - 16
_balloon = bytearray(_spare) if _spare > 0 and machine._wire.get("budget") else None
print("vboard %s: heap %d, emulator %d, held back %d, firmware's %d" % (
    machine._board, gc.mem_free() + gc.mem_alloc(), gc.mem_alloc() - (len(_balloon) if _balloon else 0),
    len(_balloon) if _balloon else 0, gc.mem_free()))
if machine._wire.get("run", "1") == "1":
    for _m in ("boot", "main"):
        try:
            os.stat(_m + ".py")
        except OSError:
            continue
        __import__(_m)
