# Messages <-> JSON-ready values: bytes fields as lowercase hex, event id
# pairs as two-element lists. Used by `hcp proto` and the golden vectors;
# the firmware does not import it.

import binascii

from protocol.errors import MessageError
from protocol.messages import TYPES, fields


def _fields(msg):
    code = TYPES.get(msg.get("type")) if isinstance(msg, dict) else None
    if code is None:
        raise MessageError("type", "unknown message type %r" % (msg.get("type") if isinstance(msg, dict) else None,))
    return fields(code)


def to_json(msg):
    out = {}
    for k in msg:
        out[k] = msg[k]
    for name, kind in _fields(msg):
        if name not in out:
            continue
        if kind == "y":
            out[name] = str(binascii.hexlify(out[name]), "ascii")
        elif kind == "E":
            out[name] = [[i[0], i[1]] for i in out[name]]
    return out


def from_json(obj):
    msg = {}
    for k in obj:
        msg[k] = obj[k]
    for name, kind in _fields(msg):
        if kind == "y" and isinstance(msg.get(name), str):
            try:
                msg[name] = binascii.unhexlify(msg[name])
            except ValueError:
                raise MessageError("field", name + " must be hex")
    return msg
