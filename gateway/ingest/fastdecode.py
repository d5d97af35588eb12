"""A CPython-only fast path for the one frame the gateway gets thousands of
times a second: a well-formed `event`. Everything else - other types, and any
frame the fast path finds the least bit off (COBS, length, CRC, version,
flags, a field, a rule) - goes to the reference decoder (`protocol.frame.decode`
+ `protocol.messages.parse`), which accepts or refuses it with its own error
kind. So the fast path never refuses anything by itself: it only accepts
what the reference accepts, with the same result (tests/test_gateway_fastdecode.py
checks both on every example, on hypothesis-made frames and on mangled ones).

Why: the reference decoder is written for a 64 KB MicroPython heap (one
allocation per step, a field table walked per message, a Python loop per
tag byte), ~20 us a frame here; this one is a handful of C calls.

`decode(packet)` -> (frame, msg) exactly as `(frame.decode(p), messages.parse(fr))`
would give (the frame a `FastFrame`, whose `verify` compares the key's tag
with `hmac.compare_digest`: the keys are gateway/devices/keys.py's, the standard
library's HMAC-SHA256 truncated to 8 bytes), or raises the reference's
ProtocolError.
"""

import binascii
import hmac
import logging
import struct
import time

from protocol import frame as _frame
from protocol import messages as M
from protocol.errors import AuthError, ProtocolError

log = logging.getLogger("hcp.gateway.ingest.router")

# The layout this decoder is written for; should protocol/messages.py change
# the event, the fast path turns itself off (everything goes to the reference).
LAYOUT = "device_id:s boot:I event_seq:I kind:k score:B reasons:S invitation:s time:I uptime_ms:I"
ENABLED = M.SCHEMA.get(M.EVENT) == ("event", LAYOUT) and M.fields.__module__ == M.__name__

_EVENT = M.EVENT
_HDR = struct.Struct("<BBII")
_CRC = struct.Struct("<I")
_II = struct.Struct("<II")
_MAX_ENCODED = _frame.MAX_ENCODED
_TAG_LEN = 8
_KINDS = ("", "rating", "unrated", "uninvited")
_ID_OK = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_")
_good_ids = {}  # device ids that passed the rule (they repeat: checked once)


class FastFrame(_frame.Frame):
    """protocol.frame.Frame with the tag compared in C."""

    __slots__ = ()

    def verify(self, key):
        if self.tag is None:
            raise AuthError("untagged", "frame has no tag but the device is keyed")
        if not hmac.compare_digest(key.tag(self.signed), self.tag):
            raise AuthError("badtag", "tag does not match the device key")


def reference(packet):
    fr = _frame.decode(packet)
    return fr, M.parse(fr)


def _unstuff(data):
    """COBS-decode; None if the block chain is broken (the reference says why).

    Decoded, a packet is itself minus its first byte with every later code
    byte turned into the 0x00 it stands for, as long as no block is a full
    one (code 0xFF: no zero follows it), which an event frame (< 254 bytes
    between zeros) never has: so only the code bytes are visited, and a
    packet with a 0xFF code is left to the block-by-block decoder."""
    n = len(data)
    if not n:
        return b""
    i = data[0]
    if i == 0xFF:
        return _unstuff_blocks(data)
    buf = bytearray(data)
    while i < n:
        c = data[i]
        if c == 0xFF:
            return _unstuff_blocks(data)
        buf[i] = 0
        i += c
    if i != n:
        return None
    del buf[0]
    return bytes(buf)


def _unstuff_blocks(data):
    """COBS-decode block by block; None if the block chain is broken."""
    n = len(data)
    i = 0
    parts = []
    add = parts.append
    while i < n:
        c = data[i]
        j = i + c
        if j > n:
            return None
        add(data[i + 1:j])
        if c != 0xFF and j < n:
            add(b"\x00")
        i = j
    return b"".join(parts)


def _device_id_ok(v):
    if v in _good_ids:
        return True
    b = v.encode("utf-8")
    if not b or len(v) > 32 or not _ID_OK.issuperset(b):
        return False
    if len(_good_ids) < 100_000:
        _good_ids[v] = True
    return True


def decode(packet):
    got = _event(packet) if ENABLED else None
    if got is None:
        return reference(packet)
    return got


def route(router, link, packets, reader):
    """gateway.ingest.router.Router.packets with this decoder: check and dispatch
    packets from `link`; bad ones are counted in `reader.errors`."""
    frame = router.frame
    for packet in packets:
        now = time.time()
        try:
            fr, msg = decode(packet)
        except ProtocolError as err:
            reader.count(err.kind)
            continue
        try:
            frame(link, fr, msg, now)
        except Exception:  # never let one frame kill a reader
            log.exception("handling %s from %s", msg.get("type"), link.name)
            reader.count("internal")


def _event(packet):
    """(FastFrame, msg) for a well-formed event frame, else None."""
    if len(packet) > _MAX_ENCODED or b"\x00" in packet or not packet:
        return None
    raw = _unstuff(packet)
    if raw is None:
        return None
    n = len(raw)
    if n < 14:
        return None
    end = n - 4
    if binascii.crc32(raw[:end]) != _CRC.unpack_from(raw, end)[0]:
        return None
    vf, mtype, session, seq = _HDR.unpack_from(raw, 0)
    if mtype != _EVENT:
        return None
    if vf == 0x11:
        end -= _TAG_LEN
        if end < 10:
            return None
        tag = raw[end:end + _TAG_LEN]
    elif vf == 0x10:
        tag = None
    else:
        return None
    try:
        # device_id:s boot:I event_seq:I kind:k score:B reasons:S invitation:s time:I uptime_ms:I
        pos = 10
        ln = raw[pos]
        pos += 1
        if pos + ln > end:
            return None
        device_id = raw[pos:pos + ln].decode("utf-8")
        pos += ln
        if pos + 11 > end:
            return None
        boot, event_seq = _II.unpack_from(raw, pos)
        k = raw[pos + 8]
        score = raw[pos + 9]
        count = raw[pos + 10]
        pos += 11
        if not 1 <= k <= 3:
            return None
        reasons = []
        for _ in range(count):
            if pos >= end:
                return None
            ln = raw[pos]
            pos += 1
            if pos + ln > end:
                return None
            reasons.append(raw[pos:pos + ln].decode("utf-8"))
            pos += ln
        if pos >= end:
            return None
        ln = raw[pos]
        pos += 1
        if pos + ln > end:
            return None
        invitation = raw[pos:pos + ln].decode("utf-8")
        pos += ln
        if pos + 8 != end:
            return None
        t, uptime_ms = _II.unpack_from(raw, pos)
    except UnicodeError:
        return None
    kind = _KINDS[k]
    # protocol/rules.py, event part: anything it would refuse goes to the reference.
    if not _device_id_ok(device_id):
        return None
    if k == 1:
        if not 1 <= score <= 5 or (score <= 2) != bool(reasons) or not invitation:
            return None
    elif reasons:
        return None
    elif k == 2:
        if score != 0 or not invitation:
            return None
    elif not 1 <= score <= 5 or invitation:
        return None
    fr = FastFrame(mtype, session, seq, raw[10:end], tag, raw[:end])
    return fr, {"type": "event", "session": session, "seq": seq, "device_id": device_id, "boot": boot,
                "event_seq": event_seq, "kind": kind, "score": score, "reasons": reasons,
                "invitation": invitation, "time": t, "uptime_ms": uptime_ms}
