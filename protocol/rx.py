# Frames into the device without heap churn: split, unstuffed, checked and
# read in one buffer, allocated once.
#
# The general path (protocol.reader, protocol.frame, protocol.messages) makes
# a copy of the packet, a decoded copy, a copy of the payload and one of the
# bytes the tag covers: four blocks of ~550 bytes for one 512-byte bitmap
# part, which a 64 KB heap after boot does not have in one piece (its largest
# free block is a few hundred bytes). Here the packet is gathered into `buf`,
# COBS-decoded over itself (the write position never passes the read
# position), its CRC and tag computed over a memoryview, and its fields read
# straight out of `buf`. What is left to allocate is the message dict and its
# small values; a `y` field (bitmap data) is a memoryview into `buf`,
# valid until the next packet.
#
# The checks and the result are messages.decode()'s (tests/test_protocol_rx.py
# compares them on every example and on random frames), for the messages a
# device receives (0x10 and up). This module is a singleton (one line per
# device): its state is its globals, like protocol.tx's.

import binascii
import struct

from protocol import rules as _rules
from protocol.errors import AuthError, FrameError, MessageError
from protocol.hmac256 import TAG_LEN, equal
from protocol.schema import SCHEMA

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


CAP = const(1200)  # longest packet kept (COBS-encoded): a 512-byte bitmap
# part is ~560; anything longer is dropped and counted in `overlong`
_HEADER = const(10)
_CRC = const(4)

buf = bytearray(CAP)
_mv = memoryview(buf)
_n = 0  # bytes of the packet being gathered
_over = False  # the packet outgrew buf: dropping bytes until the next 0x00
overlong = 0  # packets dropped for their length
session = 0  # the last accepted (session, seq) of the gateway: replay guard
seq = 0
last_seq = 0  # seq of the frame decode() last read (for an error reply)


def feed(chunk, n, handle):
    """Gather the first n bytes of chunk; for each packet completed call
    handle(k): the packet is buf[:k] while handle runs (then it is gone)."""
    global _n, _over, overlong
    mv = memoryview(chunk)
    start = 0
    while start < n:
        end = chunk.find(b"\x00", start, n)
        stop = n if end < 0 else end
        if not _over:
            if _n + stop - start > CAP:
                _over = True
            else:
                buf[_n : _n + stop - start] = mv[start:stop]
                _n += stop - start
        if end < 0:
            return
        start = end + 1
        k = _n
        _n = 0
        if _over:
            _over = False
            overlong += 1
        elif k:  # an empty packet (two delimiters in a row) is idle line
            handle(k)


def reset():
    """Forget the gateway's (session, seq), as at boot (tests decode frames
    of several sessions; a device keeps the guard for its whole boot)."""
    global session, seq
    session = seq = 0


def _unstuff(k):
    # COBS over itself: block by block, each copied down to where the
    # decoded bytes end (never ahead of where it is read from).
    o = 0
    i = 0
    while i < k:
        c = buf[i]
        if i + c > k:
            raise FrameError("cobs", "block runs past the end of the frame")
        for t in range(i + 1, i + c):
            buf[o] = buf[t]
            o += 1
        i += c
        if c != 0xFF and i < k:
            buf[o] = 0
            o += 1
    return o


def decode(k, key=None):
    """The packet in buf[:k] -> message dict (as messages.decode() gives,
    `y` fields as memoryviews into buf). With a key the frame must carry its
    good tag; without one any tag is left unchecked. A frame that passes its
    checks moves the replay guard on (before its fields are read, as
    frame.Replay.accept() does). Raises FrameError (framing, line noise),
    AuthError (tag, replay), MessageError (type, fields, rules)."""
    global last_seq, session, seq
    n = _unstuff(k)
    if n < _HEADER + _CRC:
        raise FrameError("short", "frame of %d bytes" % n)
    end = n - _CRC
    if binascii.crc32(_mv[:end]) & 0xFFFFFFFF != struct.unpack_from("<I", buf, end)[0]:
        raise FrameError("crc", "CRC mismatch")
    vf, mtype, s, q = struct.unpack_from("<BBII", buf, 0)
    if vf >> 4 != 1:
        raise FrameError("version", "protocol version %d" % (vf >> 4))
    if vf & 0x0E:
        raise FrameError("flags", "unknown flags 0x%x" % (vf & 0x0F))
    tagged = vf & 1
    if tagged:
        end -= TAG_LEN
        if end < _HEADER:
            raise FrameError("short", "tagged frame too short for its tag")
    last_seq = q
    if key is not None:
        if not tagged:
            raise AuthError("untagged", "frame has no tag but the device is keyed")
        if not equal(key.tag(_mv[:end]), _mv[end : end + TAG_LEN]):
            raise AuthError("badtag", "tag does not match the device key")
    if s < session or (s == session and q <= seq):
        raise AuthError("replay", "session %d seq %d after %d/%d" % (s, q, session, seq))
    session = s
    seq = q
    if mtype < 0x10:
        raise MessageError("type", "wrong direction")
    try:
        name, layout = SCHEMA[mtype]
    except KeyError:
        raise MessageError("type", "unknown message type 0x%02x" % mtype)
    msg = {"type": name, "session": s, "seq": q}
    pos = _HEADER
    i = 0
    while i < len(layout):
        colon = layout.find(":", i)
        msg[layout[i:colon]], pos = _get(layout[colon + 1], pos, end)
        i = colon + 3  # past "k "
    if pos != end:
        raise MessageError("trailing", "%d bytes after the last field" % (end - pos))
    _rules.check(msg)
    return msg


def _take(pos, size, end):
    if pos + size > end:
        raise MessageError("truncated", "payload ends inside a field")
    return pos + size


def _text(pos, end):
    p = _take(pos, 1, end)
    q = _take(p, buf[pos], end)
    try:
        return str(bytes(_mv[p:q]), "utf-8"), q
    except UnicodeError:
        raise MessageError("field", "text is not UTF-8")


def _get(kind, pos, end):
    if kind == "s":
        return _text(pos, end)
    if kind == "S":
        # The list at its final size at once: appending would grow it in
        # steps (a 40-case batch ends in a 512-byte block), and a heap in
        # pieces has small blocks, not big ones.
        p = _take(pos, 1, end)
        _take(p, buf[pos], end)  # each text has its length byte at least
        items = [None] * buf[pos]
        for i in range(len(items)):
            items[i], p = _text(p, end)
        return items, p
    if kind == "y":
        p = _take(pos, 2, end)
        q = _take(p, struct.unpack_from("<H", buf, pos)[0], end)
        return _mv[p:q], q
    if kind == "E":
        p = _take(pos, 2, end)
        count = struct.unpack_from("<H", buf, pos)[0]
        q = _take(p, 8 * count, end)
        ids = [None] * count
        for i in range(count):
            ids[i] = struct.unpack_from("<II", buf, p)
            p += 8
        return ids, q
    fmt = "<" + kind  # B H I h (no `k`: events only go up, refused before their fields)
    q = _take(pos, struct.calcsize(fmt), end)
    return struct.unpack_from(fmt, buf, pos)[0], q
