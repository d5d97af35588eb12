# hcp evaluator firmware: the entry point.
#
#   micropython -X heapsize=64K firmware/main.py --flash DIR --uart PTY [--board sim]
#
# It runs from the repository (firmware/main.py, packages one level up) and
# from a device's flash, where main.py sits next to firmware/ and protocol/
# (as .py or .mpy). On a board it runs with no arguments and reads its
# settings from board.json.

import sys


def _root():
    here = sys.argv[0] if sys.argv and sys.argv[0] else ""
    i = here.rfind("/")
    here = here[:i] if i > 0 else ("/" if i == 0 else ".")
    import os

    try:
        os.stat(here + "/firmware")
        return here  # flash layout
    except OSError:
        return here + "/.."  # repository layout


sys.path.insert(0, _root())

# The protocol first, into an empty heap: compiling a module from source
# needs room for its parse tree, and the buffers of the device's codec
# (protocol.rx keeps a frame in, up to 1200 bytes COBS-encoded: the gateway
# sends bitmaps in 512-byte parts and nothing else comes near; protocol.tx
# one frame out) want one contiguous block each while there is one. The
# general codec (protocol.messages, protocol.reader) is never loaded here.
# isort: off
import protocol.rx  # noqa: E402, F401
import protocol.tx  # noqa: E402, F401
import firmware  # noqa: E402
from firmware import boot  # noqa: E402
# isort: on

dev = boot.start(sys.argv[1:])
# Boot-only code leaves RAM (see boot.py).
del boot, firmware.boot, firmware.recover
del sys.modules["firmware.boot"], sys.modules["firmware.recover"]
dev.run()
