# Frames out of the device without heap churn: one buffer, allocated once.
#
# messages.encode() builds a dict, a payload bytearray that grows field by
# field, a frame bytearray, then the COBS copy: five or six blocks of a few
# hundred bytes per frame, which a fragmented 64 KB heap may not have in one
# piece (a MemoryError at 4 KB free). Here the frame is packed in place
# (header and fields with struct.pack_into, the HMAC tag and the CRC-32 over
# a memoryview) and COBS-encoded in place too, in the same buffer: the frame
# sits _AT bytes in, and the encoding, never more than that ahead of the
# byte it reads, is written from 0 over it.
#
# The bytes are exactly messages.encode()'s (tests/test_protocol_tx.py):
# the field table is the same (schema.SCHEMA), the checks the same
# (fields.put's ranges, rules.check_event, rules.device_id). Only the kinds
# a device sends are written (not y or E).

import binascii
import struct

from protocol import rules as _rules
from protocol import schema as _m
from protocol.errors import MessageError
from protocol.schema import KINDS, is_int

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_AT = const(4)  # room for the COBS overhead: 1 + 1 per 254 bytes, up to 762
CAP = const(400)  # longest frame (header, payload, tag, crc) before COBS:
# an event is at most a journal slot's 256 bytes of fields, + 56
_CRC = const(4)
_TAG = const(8)

buf = bytearray(_AT + CAP + 1)  # the one buffer (frame, then its encoding)
_mv = memoryview(buf)


def _kinds(code):
    # "device_id:s fw:s ..." -> b"ss...": the kinds only, as bytes (indexing
    # bytes gives ints: no objects per field when a frame is packed).
    out = bytearray()
    for item in _m.SCHEMA[code][1].split():
        out.append(ord(item[-1]))
    return bytes(out)


KIND = {}
for _c in (_m.HELLO, _m.EVENT, _m.HEALTH, _m.DONE, _m.ERROR):
    KIND[_c] = _kinds(_c)
_c = None

_s = const(115)  # ord("s")
_S = const(83)
_k = const(107)
_h = const(104)
# Integer kinds: struct format and top value, by ord(kind); i16 is h.
_INT = {66: ("<B", 0xFF), 72: ("<H", 0xFFFF), 73: ("<I", 0xFFFFFFFF), _h: ("<h", 0xFFFF)}


def _int(v, top):
    if not is_int(v) or not 0 <= v <= top:
        raise MessageError("field", "0..%d" % top)


def _text(n, v, end):
    if not isinstance(v, str):
        raise MessageError("field", "text")
    b = v.encode()
    k = len(b)
    if k > 255:
        raise MessageError("field", "text")
    if n + 1 + k > end:
        raise MessageError("long", "frame")
    buf[n] = k
    buf[n + 1 : n + 1 + k] = b
    return n + 1 + k


def frame(code, session, seq, values, key=None):
    """Message `code` with its fields' `values` (in table order) as the line
    bytes, delimiter included: a memoryview of the module's buffer, valid
    until the next call. `key`: a protocol.hmac256.Key or None."""
    kinds = KIND[code]
    if len(values) != len(kinds):
        raise MessageError("field", "count")
    _int(session, 0xFFFFFFFF)
    _int(seq, 0xFFFFFFFF)
    struct.pack_into("<BBII", buf, _AT, 0x11 if key is not None else 0x10, code, session, seq)
    n = _AT + 10
    # Where the payload must end: the frame (with its tag when tagged, and
    # its CRC) is at most CAP bytes.
    end = _AT + CAP - _CRC - (_TAG if key is not None else 0)
    for i in range(len(kinds)):
        k = kinds[i]
        v = values[i]
        if k == _s:
            n = _text(n, v, end)
            continue
        if k == _S:
            if not isinstance(v, (list, tuple)) or len(v) > 255:
                raise MessageError("field", "list")
            if n + 1 > end:
                raise MessageError("long", "frame")
            buf[n] = len(v)
            n += 1
            for item in v:
                n = _text(n, item, end)
            continue
        if k == _k:
            if not isinstance(v, str) or v not in KINDS or not v:
                raise MessageError("field", "kind")
            v = KINDS.index(v)
            k = 66
        fmt, top = _INT[k]
        if k == _h:
            v += 0x8000 if is_int(v) else 0  # -32768..32767 is 0..0xFFFF moved
        _int(v, top)
        size = struct.calcsize(fmt)
        if n + size > end:
            raise MessageError("long", "frame")
        struct.pack_into(fmt, buf, n, v - 0x8000 if k == _h else v)
        n += size
    # The rules that apply to what a device sends (rules.check).
    if code != _m.ERROR:
        _rules.device_id(values[0])
    if code == _m.EVENT:
        _rules.check_event(values[3], values[4], values[5], values[6])
    if key is not None:
        buf[n : n + _TAG] = key.tag(_mv[_AT:n])
        n += _TAG
    struct.pack_into("<I", buf, n, binascii.crc32(_mv[_AT:n]) & 0xFFFFFFFF)
    n += _CRC
    # COBS, in place: byte i of the frame (at _AT + i) is read before
    # anything is written past position 1 + i + i // 254 <= _AT + i.
    o = 1
    code_at = 0
    c = 1
    for i in range(_AT, n):
        b = buf[i]
        if b:
            buf[o] = b
            o += 1
            c += 1
            if c == 0xFF:
                buf[code_at] = c
                code_at = o
                o += 1
                c = 1
        else:
            buf[code_at] = c
            code_at = o
            o += 1
            c = 1
    buf[code_at] = c
    buf[o] = 0
    return _mv[: o + 1]
