# The field kinds of the message table and their byte layouts (all integers
# little-endian):
#   B u8   H u16   I u32   h i16
#   s  text: u8 byte length + UTF-8 (at most 255 bytes)
#   y  bytes: u16 length + raw bytes
#   S  list of text: u8 count + that many `s`
#   E  list of event ids: u16 count + that many (boot u32, seq u32)
#   k  event kind: u8, 1 rating, 2 unrated, 3 uninvited (strings in the dict)
#
# put() validates as it writes (MicroPython's struct.pack does not range-check,
# and its bool is not an int); get() raises MessageError, never IndexError.

import struct

from protocol.errors import MessageError
from protocol.schema import KINDS, is_int  # noqa: F401  (KINDS re-exported)

_INT = {"B": (0xFF, "<B", 1), "H": (0xFFFF, "<H", 2), "I": (0xFFFFFFFF, "<I", 4)}


def _text(v, name):
    if not isinstance(v, str):
        raise MessageError("field", name + " must be text")
    b = v.encode("utf-8")
    if len(b) > 255:
        raise MessageError("field", name + " longer than 255 bytes")
    return b


def put(out, kind, v, name):
    if kind in _INT:
        top, fmt, _ = _INT[kind]
        if not is_int(v) or not 0 <= v <= top:
            raise MessageError("field", name + " must be an integer 0..%d" % top)
        out.extend(struct.pack(fmt, v))
    elif kind == "h":
        if not is_int(v) or not -32768 <= v <= 32767:
            raise MessageError("field", name + " must be an integer -32768..32767")
        out.extend(struct.pack("<h", v))
    elif kind == "s":
        b = _text(v, name)
        out.append(len(b))
        out.extend(b)
    elif kind == "y":
        if not isinstance(v, (bytes, bytearray)) or len(v) > 0xFFFF:
            raise MessageError("field", name + " must be bytes (at most 65535)")
        out.extend(struct.pack("<H", len(v)))
        out.extend(v)
    elif kind == "S":
        if not isinstance(v, (list, tuple)) or len(v) > 255:
            raise MessageError("field", name + " must be a list of at most 255 texts")
        out.append(len(v))
        for item in v:
            b = _text(item, name)
            out.append(len(b))
            out.extend(b)
    elif kind == "E":
        if not isinstance(v, (list, tuple)) or len(v) > 0xFFFF:
            raise MessageError("field", name + " must be a list of [boot, seq]")
        out.extend(struct.pack("<H", len(v)))
        for item in v:
            if (not isinstance(item, (list, tuple)) or len(item) != 2
                    or not is_int(item[0]) or not is_int(item[1])
                    or not 0 <= item[0] <= 0xFFFFFFFF or not 0 <= item[1] <= 0xFFFFFFFF):
                raise MessageError("field", name + " items must be [boot, seq] u32 pairs")
            out.extend(struct.pack("<II", item[0], item[1]))
    elif kind == "k":
        if v not in KINDS or not v:
            raise MessageError("field", name + " must be rating, unrated or uninvited")
        out.append(KINDS.index(v))


def _take(buf, pos, n):
    end = pos + n
    if end > len(buf):
        raise MessageError("truncated", "payload ends inside a field")
    return end


def _get_text(buf, pos, name):
    end = _take(buf, pos, 1)
    end2 = _take(buf, end, buf[pos])
    try:
        return str(bytes(buf[end:end2]), "utf-8"), end2
    except UnicodeError:
        raise MessageError("field", name + " is not UTF-8")


def get(buf, pos, kind, name):
    if kind in _INT:
        _, fmt, size = _INT[kind]
        end = _take(buf, pos, size)
        return struct.unpack_from(fmt, buf, pos)[0], end
    if kind == "h":
        end = _take(buf, pos, 2)
        return struct.unpack_from("<h", buf, pos)[0], end
    if kind == "s":
        return _get_text(buf, pos, name)
    if kind == "y":
        end = _take(buf, pos, 2)
        (n,) = struct.unpack_from("<H", buf, pos)
        end2 = _take(buf, end, n)
        return bytes(memoryview(buf)[end:end2]), end2  # one copy, not two
    if kind == "S":
        end = _take(buf, pos, 1)
        items = []
        for _ in range(buf[pos]):
            item, end = _get_text(buf, end, name)
            items.append(item)
        return items, end
    if kind == "E":
        end = _take(buf, pos, 2)
        (n,) = struct.unpack_from("<H", buf, pos)
        end2 = _take(buf, end, 8 * n)
        ids = []
        for i in range(n):
            ids.append(struct.unpack_from("<II", buf, end + 8 * i))
        return ids, end2
    # "k"
    end = _take(buf, pos, 1)
    k = buf[pos]
    if not 1 <= k < len(KINDS):
        raise MessageError("field", name + " has unknown kind %d" % k)
    return KINDS[k], end
