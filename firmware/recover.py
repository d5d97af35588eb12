# Power-on: open the journal file and rebuild the journal's state from it.
# Runs once at boot; boot.py then drops this module from RAM.
#
# Every slot is read and its CRC checked. A torn or damaged record (a write
# cut by power loss) is discarded: counted in `corrupt` and its state byte
# cleared on flash, so it is counted once and its slot is free again. Live
# records are ordered by event id, which is the order they were written and
# the order they must be resent. The next record goes after the newest one
# found, so the oldest acknowledged slots are overwritten first.

import binascii
import os
import struct

from firmware.journal import ACKED, LIVE, REC_LEN, SLOT, Journal


def open_journal(path, slots=256, reserve=-1):
    try:
        size = os.stat(path)[6] // SLOT
    except OSError:
        size = 0
        open(path, "wb").close()
    # Never shrink: a smaller setting must not cut off live records.
    n = max(size, slots)
    f = open(path, "r+b")
    j = Journal(f, n, reserve)
    buf = j.buf
    mv = memoryview(buf)
    newest = (0, 0)
    for s in range(size):
        f.seek(s * SLOT)
        f.readinto(buf)
        if buf[0] != LIVE and buf[0] != ACKED:
            continue
        k = buf[1] | buf[2] << 8
        if not (REC_LEN + 2 <= k <= SLOT - 7 and binascii.crc32(mv[1 : 3 + k])
                & 0xFFFFFFFF == struct.unpack_from("<I", buf, 3 + k)[0]):
            j.corrupt += 1
            f.seek(s * SLOT)
            f.write(b"\x00")
            continue
        key = struct.unpack_from("<II", buf, 3)
        j.max_boot = max(j.max_boot, key[0])
        if key >= newest:
            newest = key
            j.next = (s + 1) % n
        if buf[0] == LIVE:
            j.is_live[s] = 1
            # Ring order is nearly write order, so this insertion sort
            # moves little. It reads the ids it compares back from flash
            # instead of holding them in RAM (a sort with a key would build
            # hundreds of tuples; an index, 8 bytes a slot).
            i = len(j.live)
            while i:
                f.seek(j.live[i - 1] * SLOT + 3)
                f.readinto(j.key)
                if struct.unpack("<II", j.key) < key:
                    break
                i -= 1
            j.live.insert(i, s)
    if size < n:
        f.seek(size * SLOT)
        for _ in range(size, n):
            f.write(bytes(SLOT))
        f.flush()
    return j
