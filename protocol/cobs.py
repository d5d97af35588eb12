# Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).
#
# COBS rewrites a packet so that it contains no 0x00 byte; 0x00 then marks the
# end of every frame on the line. A reader that lands in the middle of a frame
# (after a reboot, or after noise ate a delimiter) throws away bytes up to the
# next 0x00 and is back in step: that is the whole resynchronisation story.
#
# The encoded packet is a chain of blocks. Each block starts with a code byte
# c (1..255) followed by c-1 data bytes; a block with c < 255 stands for its
# data followed by one 0x00, except the last block of the packet. Overhead is
# one byte per 254 data bytes, plus one.
#
# Both functions work on whole runs (bytes.split and slices) rather than byte
# by byte: the same code is fast on CPython and small on MicroPython.

from protocol.errors import FrameError

_BLOCK = 254  # longest run of non-zero bytes one block carries


def _runs(data):
    # Yield (start, end) of each run between zeros: bytes.find walks in C,
    # and no list of parts is built (a frame full of zeros would need one
    # object per zero, which a 64K heap cannot spare).
    n = len(data)
    pos = 0
    while True:
        z = data.find(b"\x00", pos)
        if z < 0:
            yield pos, n
            return
        yield pos, z
        pos = z + 1


def encode(data, delimit=False):
    """Return `data` COBS-encoded, as a bytearray of exactly the right size
    (allocated once: growing a buffer fragments a small heap). With
    delimit=True the 0x00 frame delimiter is appended."""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    # Each 0x00 becomes a code byte, plus one leading code byte, plus one
    # extra code byte per full run of 254 non-zero bytes.
    size = len(data) + 1 + (1 if delimit else 0)
    for start, end in _runs(data):
        size += (end - start) // _BLOCK
    out = bytearray(size)
    o = 0
    for start, end in _runs(data):
        while end - start >= _BLOCK:
            out[o] = 0xFF
            out[o + 1 : o + 1 + _BLOCK] = data[start : start + _BLOCK]
            o += 1 + _BLOCK
            start += _BLOCK
        # Always close the run with a short block (maybe empty): it carries
        # the run's implicit trailing zero, or ends the packet.
        m = end - start
        out[o] = m + 1
        out[o + 1 : o + 1 + m] = data[start:end]
        o += 1 + m
    return out


def decode(data):
    """Invert encode(). `data` must not contain the 0x00 delimiter."""
    return bytes(decode_into(data))


def decode_into(data):
    """decode() into a new bytearray (no final copy: frame.decode slices it)."""
    if b"\x00" in data:
        raise FrameError("cobs", "zero byte inside a frame")
    # First pass: check the chain of blocks and size the output, so the
    # result is allocated once (growing a buffer needs old and new at once,
    # which a small heap may not have in one piece).
    n = len(data)
    size = 0
    i = 0
    while i < n:
        c = data[i]
        j = i + c
        if j > n:
            raise FrameError("cobs", "block runs past the end of the frame")
        size += c - 1
        i = j
        if c != 0xFF and i < n:
            size += 1
    out = bytearray(size)
    o = 0
    i = 0
    while i < n:
        c = data[i]
        out[o : o + c - 1] = data[i + 1 : i + c]
        o += c - 1
        i += c
        if c != 0xFF and i < n:
            o += 1  # the implied zero (already 0 in the new buffer)
    return out
