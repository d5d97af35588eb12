# One frame on the wire.
#
# Before COBS, a frame is (all integers little-endian):
#
#   off  size  field
#   0    1     version << 4 | flags       version = 1; flags bit 0 = tagged
#   1    1     message type               see protocol/messages.py
#   2    4     session (u32)              sender's boot/start counter
#   6    4     seq (u32)                  sender's frame counter in the session
#   10   n     payload                    the message fields
#   10+n 8     tag (only if tagged)       HMAC-SHA256(key, bytes 0..10+n)[:8]
#   end  4     crc (u32)                  CRC-32 (binascii.crc32) of all before
#
# On the line the frame is COBS-encoded and followed by one 0x00.
#
# The CRC catches line noise; the tag proves the sender holds the device key.
# (session, seq) must grow strictly from one accepted frame to the next, so a
# recorded frame replayed later fails even though its tag is good.

import binascii
import struct

from protocol import cobs
from protocol.errors import AuthError, FrameError
from protocol.hmac256 import TAG_LEN, equal

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)
FLAG_TAGGED = const(0x01)
HEADER_LEN = const(10)
CRC_LEN = const(4)
MIN_LEN = const(14)  # header + crc, empty payload, untagged
MAX_PAYLOAD = const(2048)
# Longest decoded frame, and longest COBS-encoded one (one byte per 254 + 1).
MAX_FRAME = const(2048 + 10 + 8 + 4)
MAX_ENCODED = const(2070 + 2070 // 254 + 1)

_HDR = "<BBII"


class Frame:
    """A checked frame: header fields, payload, and whether a tag was present."""

    __slots__ = ("mtype", "session", "seq", "payload", "tag", "signed")

    def __init__(self, mtype, session, seq, payload, tag, signed):
        self.mtype = mtype
        self.session = session
        self.seq = seq
        self.payload = payload
        self.tag = tag  # None when untagged
        self.signed = signed  # bytes the tag covers

    def verify(self, key):
        """Raise AuthError unless this frame carries a good tag for `key`
        (a protocol.hmac256.Key)."""
        if self.tag is None:
            raise AuthError("untagged", "frame has no tag but the device is keyed")
        if not equal(key.tag(self.signed), self.tag):
            raise AuthError("badtag", "tag does not match the device key")


def encode(mtype, session, seq, payload, key=None):
    """Build the bytes to put on the line, delimiter included.
    `key` is a protocol.hmac256.Key or None for an untagged frame."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameError("long", "payload of %d bytes" % len(payload))
    if not (0 <= mtype <= 0xFF and 0 <= session <= 0xFFFFFFFF and 0 <= seq <= 0xFFFFFFFF):
        raise FrameError("header", "type, session or seq out of range")
    flags = FLAG_TAGGED if key is not None else 0
    body = bytearray(struct.pack(_HDR, VERSION << 4 | flags, mtype, session, seq))
    body.extend(payload)
    if key is not None:
        body.extend(key.tag(body))
    body.extend(struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF))
    return cobs.encode(body, True)


def decode(packet):
    """Check one packet (COBS bytes between delimiters, delimiter excluded)
    and return a Frame. The tag, if any, is not checked here: the caller looks
    up the device key and calls Frame.verify()."""
    if len(packet) > MAX_ENCODED:
        raise FrameError("long", "frame of %d bytes" % len(packet))
    # Decoded into a bytearray; the parts kept are copied out of it once
    # each (bytes of a memoryview), which spares the heap a whole copy.
    raw = cobs.decode_into(packet)
    mv = memoryview(raw)
    n = len(raw)
    if n < MIN_LEN:
        raise FrameError("short", "frame of %d bytes" % n)
    (crc,) = struct.unpack_from("<I", raw, n - CRC_LEN)
    if binascii.crc32(mv[: n - CRC_LEN]) & 0xFFFFFFFF != crc:
        raise FrameError("crc", "CRC mismatch")
    vf, mtype, session, seq = struct.unpack_from(_HDR, raw, 0)
    if vf >> 4 != VERSION:
        raise FrameError("version", "protocol version %d" % (vf >> 4))
    if vf & ~FLAG_TAGGED & 0x0F:
        raise FrameError("flags", "unknown flags 0x%x" % (vf & 0x0F))
    end = n - CRC_LEN
    tag = None
    if vf & FLAG_TAGGED:
        end -= TAG_LEN
        if end < HEADER_LEN:
            raise FrameError("short", "tagged frame too short for its tag")
        tag = bytes(mv[end : end + TAG_LEN])
    return Frame(mtype, session, seq, bytes(mv[HEADER_LEN:end]), tag, bytes(mv[:end]))


class Replay:
    """Remembers the last accepted (session, seq) of one peer and refuses
    anything that does not come after it."""

    __slots__ = ("session", "seq")

    def __init__(self, session=0, seq=0):
        self.session = session
        self.seq = seq

    def check(self, frame):
        if frame.session < self.session or (
            frame.session == self.session and frame.seq <= self.seq
        ):
            raise AuthError(
                "replay",
                "session %d seq %d after %d/%d" % (frame.session, frame.seq, self.session, self.seq),
            )

    def accept(self, frame):
        self.check(frame)
        self.session = frame.session
        self.seq = frame.seq
