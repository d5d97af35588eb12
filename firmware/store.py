# Device settings on flash, one small file each, apart from the code (a
# re-flash replaces main.py, firmware/ and protocol/ and leaves these be):
#
#   device.json   {"device_id": ...}        identity, written once
#   boot          boot counter (decimal)    see boot.py
#   key           the device key, 64 hex digits: written by the technician's
#                 tool over the USB cable (`hcp tool provision`), never
#                 received over the link (docs/link.md "Keys")
#   pair.json     {"staff_id", "window"}    binding (from the gateway's `bind`)
#   config.json   the last `config` message from the gateway
#   bm<slot>      a 1-bit image: u16 width, u16 height, MONO_HLSB rows
#   board.json    optional: the board's table of boards.toml, as JSON
#   journal       the event journal (journal.py)
#
# Settings files are replaced atomically: write name.tmp, flush, rename. A
# power cut leaves the old file or the new one, never half of one.

import json
import os
import struct
from binascii import unhexlify

ROOT = "./"  # the flash directory, set at boot


def atomic(path, data):
    f = open(path + ".tmp", "wb")
    f.write(data)
    # flush() is the durability point on the unix port: MicroPython's posix
    # file flush() calls fsync() (os.fsync does not exist there).
    f.flush()
    f.close()
    os.rename(path + ".tmp", path)


def get(name, default=None):
    """A JSON settings file (name without .json), or default."""
    try:
        with open(ROOT + name + ".json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def put(name, obj):
    atomic(ROOT + name + ".json", json.dumps(obj))


def key():
    """The device key (32 bytes), or None when the device was never
    provisioned (or its key file is damaged)."""
    try:
        with open(ROOT + "key") as f:
            k = unhexlify(f.read().strip())
    except (OSError, ValueError):
        return None
    return k if len(k) == 32 else None


# Bitmaps arrive in parts (`offset`), each written straight into its file:
# the file is the assembly buffer, so a 1 KB card costs no RAM. A part with
# another size starts the image over. No flush: a torn picture is redrawn
# by the gateway at the next pairing; nothing depends on it.


def put_bitmap(slot, w, h, offset, data):
    p = ROOT + "bm%d" % slot
    head = struct.pack("<HH", w, h)
    try:
        f = open(p, "r+b")
        if f.read(4) != head:
            f.close()
            raise OSError
    except OSError:
        f = open(p, "wb")
        f.write(head)
        zero = bytes(64)  # blank the image in small steps: no 1 KB block
        n = (w + 7) // 8 * h
        while n > 0:
            f.write(zero[: min(n, 64)])
            n -= 64
        f.close()
        f = open(p, "r+b")
    f.seek(4 + offset)
    f.write(data)
    f.close()


def bitmap(slot):
    """(width, height, open file at the first row) of a slot, or None. The
    caller reads rows itself: a whole card would be 1 KB of heap at once."""
    try:
        f = open(ROOT + "bm%d" % slot, "rb")
    except OSError:
        return None
    head = f.read(4)
    if len(head) == 4:
        w, h = struct.unpack("<HH", head)
        return w, h, f
    f.close()
    return None


def drop_bitmap(slot):
    try:
        os.remove(ROOT + "bm%d" % slot)
    except OSError:
        pass
