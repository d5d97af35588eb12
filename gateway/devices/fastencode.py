"""A CPython-only fast path for the frame the gateway sends most: the `ack`
(one per device per committed batch, ~100 per batch under load).

The reference encoder (`protocol.messages.encode`: a field table walked per
message, COBS and HMAC written for a 64 KB MicroPython heap) takes ~25 us per
ACK frame here; this one is a few C calls: one `struct.pack` of the payload,
the key's tag (gateway/devices/keys.py: the standard library's hmac), `crc32`, and
COBS over `bytes.split`. It returns the very bytes the reference returns
(tests/test_gateway_fastencode.py compares both on random ids, keys, sessions,
seqs and every COBS block boundary); anything it is not sure of (the ACK
layout changed in protocol/, an id not a u32 pair, too many ids, a device id
the rules refuse) goes to the reference, which encodes it or raises its own
error.
"""

import binascii
import struct

from gateway.ingest import fastdecode
from protocol import frame as _frame
from protocol import messages as M

LAYOUT = "device_id:s ids:E"
ENABLED = M.SCHEMA.get(M.ACK) == ("ack", LAYOUT)

_ACK = M.ACK
_HDR = struct.Struct("<BBII")
_CRC = struct.Struct("<I")
_CODE = [bytes([n + 1]) for n in range(254)]  # COBS code byte of a short block of n bytes
_FULL = b"\xff"
_MAX_PAYLOAD = _frame.MAX_PAYLOAD
_packs = {}  # number of ids -> struct.Struct("<H" + "II" * n)


def _cobs(data):
    """protocol.cobs.encode(data, delimit=True), as bytes: each run between
    zeros becomes full 255-blocks of 254 bytes while >= 254 remain, then a
    short block (maybe empty)."""
    out = []
    add = out.append
    for run in data.split(b"\x00"):
        while len(run) >= 254:
            add(_FULL)
            add(run[:254])
            run = run[254:]
        add(_CODE[len(run)])
        add(run)
    add(b"\x00")
    return b"".join(out)


def _payload(device_id, ids):
    """device_id:s ids:E, or None when the reference should judge."""
    n = len(ids)
    if not ENABLED or not 1 <= n <= 0xFFFF or not fastdecode._device_id_ok(device_id):
        return None
    st = _packs.get(n)
    if st is None:
        st = struct.Struct("<H" + "II" * n)
        if len(_packs) < 512:
            _packs[n] = st
    flat = [n]
    try:
        for boot, seq in ids:
            if type(boot) is not int or type(seq) is not int:
                return None
            flat.append(boot)
            flat.append(seq)
        body = st.pack(*flat)
    except (TypeError, ValueError, struct.error):  # not pairs, or not u32
        return None
    did = device_id.encode("utf-8")  # checked above: ASCII, 1..32
    if 1 + len(did) + len(body) > _MAX_PAYLOAD:
        return None
    return bytes((len(did),)) + did + body


def ack(session, seq, device_id, ids, key):
    """protocol.messages.encode({"type": "ack", "session": session, "seq": seq,
    "device_id": device_id, "ids": ids}, key) as bytes (key: a
    gateway.devices.keys.Key, or anything with its tag(), or None)."""
    payload = None
    if type(session) is int and type(seq) is int and 0 <= session <= 0xFFFFFFFF and 0 <= seq <= 0xFFFFFFFF:
        payload = _payload(device_id, ids)
    if payload is None:
        return bytes(M.encode({"type": "ack", "session": session, "seq": seq,
                               "device_id": device_id, "ids": ids}, key))
    if key is None:
        body = _HDR.pack(0x10, _ACK, session, seq) + payload
    else:
        body = _HDR.pack(0x11, _ACK, session, seq) + payload
        body += key.tag(body)
    return _cobs(body + _CRC.pack(binascii.crc32(body)))
