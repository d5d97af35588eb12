# The message set, as a table of field layouts, and the codec over it.
#
# A message is a plain dict: {"type": NAME, "session": S, "seq": N, fields...}.
# Dicts keep the firmware free of classes it would have to keep in RAM, and
# they print as the JSON that `hcp proto` shows a technician.
#
# The table (codes, layouts) is protocol/schema.py, field kinds are in
# protocol/fields.py, the domain rules in protocol/rules.py. The device does
# not load this module: it has its own codec (protocol/tx.py, protocol/rx.py).
#
# Types 0x01-0x0F travel device -> gateway, 0x10-0x2F gateway -> device,
# 0x7F (error) either way. protocol/README.md is the byte-level reference.

import sys

from protocol import frame as _frame
from protocol.errors import MessageError, ProtocolError
from protocol.fields import KINDS, get, is_int, put  # noqa: F401  (KINDS re-exported)
from protocol.rules import MAX_REASONS, check  # noqa: F401  (re-exported)
from protocol.schema import (  # noqa: F401  (re-exported: the codes are part of this API)
    ACK,
    BIND,
    BITMAP,
    CANCEL,
    CONFIG,
    DONE,
    E_ARG,
    E_AUTH,
    E_FRAME,
    E_FULL,
    E_STATE,
    E_TYPE,
    ERROR,
    EVENT,
    HEALTH,
    HELLO,
    INVITE,
    SCHEMA,
    SLOT_CARD,
    SLOT_PROMPT,
    SLOT_REASON0,
    SLOT_REASONS,
    SLOT_THANKS,
    TIME,
    UNBIND,
)

# CPython keeps the split layouts; the device splits on each use (messages
# are rare there, RAM is not).
_CACHE = None if sys.implementation.name == "micropython" else {}


def fields(code):
    """[(name, kind), ...] of message type `code`."""
    if _CACHE is not None and code in _CACHE:
        return _CACHE[code]
    out = []
    for item in SCHEMA[code][1].split():
        name, kind = item.split(":")
        out.append((name, kind))
    if _CACHE is not None:
        _CACHE[code] = out
    return out


def iter_fields(code):
    """(name, kind) of message type `code`, one at a time. On the device
    this walks the layout string without building lists (a list per
    message encoded is heap a 64 KB device cannot spare)."""
    if _CACHE is not None:
        yield from fields(code)
        return
    layout = SCHEMA[code][1]
    pos = 0
    while pos < len(layout):
        colon = layout.find(":", pos)
        end = layout.find(" ", colon)
        if end < 0:
            end = len(layout)
        yield layout[pos:colon], layout[colon + 1 : end]
        pos = end + 1


TYPES = {}
for _code in SCHEMA:
    TYPES[SCHEMA[_code][0]] = _code

def encode_payload(msg):
    """The payload bytes of `msg` (no frame around them)."""
    if not isinstance(msg, dict):
        raise MessageError("type", "a message is a dict")
    code = TYPES.get(msg.get("type"))
    if code is None:
        raise MessageError("type", "unknown message type %r" % (msg.get("type"),))
    out = bytearray()
    for name, kind in iter_fields(code):
        if name not in msg:
            raise MessageError("field", "%s needs field %s" % (msg["type"], name))
        put(out, kind, msg[name], name)
    check(msg)
    return code, out


def decode_payload(code, session, seq, payload):
    try:
        name = SCHEMA[code][0]
    except KeyError:
        raise MessageError("type", "unknown message type 0x%02x" % code)
    msg = {"type": name, "session": session, "seq": seq}
    pos = 0
    for fname, kind in iter_fields(code):
        msg[fname], pos = get(payload, pos, kind, fname)
    if pos != len(payload):
        raise MessageError("trailing", "%d bytes after the last field" % (len(payload) - pos))
    check(msg)
    return msg


def encode(msg, key=None):
    """Message dict -> bytes for the line (COBS frame with its 0x00).
    `key` is a protocol.hmac256.Key to tag the frame, or None."""
    code, payload = encode_payload(msg)
    session = msg.get("session", 0)
    seq = msg.get("seq", 0)
    if not is_int(session) or not is_int(seq):
        raise MessageError("field", "session and seq must be integers")
    return _frame.encode(code, session, seq, payload, key)


def parse(fr):
    """A checked protocol.frame.Frame -> message dict."""
    return decode_payload(fr.mtype, fr.session, fr.seq, fr.payload)


def decode(packet, key=None):
    """One packet (bytes between delimiters) -> message dict. With a key the
    frame must carry a good tag; without one any tag is left unchecked."""
    fr = _frame.decode(packet)
    if key is not None:
        fr.verify(key)
    return parse(fr)


def direction(code):
    """'up' (device -> gateway), 'down' (gateway -> device) or 'both'."""
    if code == ERROR:
        return "both"
    return "up" if code < 0x10 else "down"


__all__ = ["ProtocolError", "encode", "decode", "parse", "check", "SCHEMA", "TYPES"]
