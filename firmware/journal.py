# The flash journal: every event (rating, unrated, uninvited press) is
# written here, with a CRC, before the screen thanks the citizen, and stays
# until the gateway acknowledges it.
#
# One file of fixed-size slots (a ring). A slot is
#
#   0     state   'E' live (not yet acknowledged), 'A' acknowledged,
#                 anything else: empty
#   1-2   n       body length (u16 LE)
#   3     body    boot u32, event_seq u32, kind u8, score u8, time u32,
#                 uptime_ms u32, invitation (u8 len + UTF-8),
#                 reasons (u8 count + that many u8 len + UTF-8)
#   3+n   crc     CRC-32 of bytes 1 .. 3+n (length and body)
#
# Why slots and not an append-only log: the file never grows, no compaction
# pass rewrites live data, and an ACK is a one-byte write of 'A' over 'E'.
# A write torn by a power cut leaves a slot whose CRC fails; the boot scan
# discards it (counts it in `corrupt` and clears its state byte). The torn
# slot can only be the one being written, and the citizen was not thanked
# for it yet: thanks come only after append() returned.
#
# Full policy: new records go to the slot after the last one written,
# skipping live slots, so the oldest *acknowledged* data is overwritten
# first and a live (unacknowledged) record never is. When no slot is free
# append() refuses. Uninvited presses (audit) may not take the last
# `reserve` free slots: they must never be what keeps a citizen's rating
# out of the journal.
#
# Acknowledged slots keep their (boot, seq) until overwritten, so the boot
# scan still sees the highest boot number ever used (see docs/link.md: boot
# = max(stored, highest in journal) + 1, event ids never repeat).
#
# Opening and scanning the file at power-on is recover.py's job: that code
# runs once and is then dropped from RAM.

import binascii
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SLOT = const(256)
LIVE = const(0x45)  # 'E'
ACKED = const(0x41)  # 'A'
REC = "<IIBBII"  # boot, seq, kind, score, time, uptime_ms
REC_LEN = const(18)
# Bytes a record has for its invitation and reasons (with their lengths).
ROOM = SLOT - 7 - REC_LEN

RATING = const(1)
UNRATED = const(2)
UNINVITED = const(3)


class Journal:
    def __init__(self, f, slots, reserve):
        self.f = f  # the open file, slots * SLOT bytes
        self.slots = slots
        # Free slots uninvited presses may not take.
        self.reserve = max(1, slots // 16) if reserve < 0 else reserve
        self.buf = bytearray(SLOT)
        self.key = bytearray(8)  # one (boot, seq) read back from flash
        self.is_live = bytearray(slots)  # 1 = slot holds a live record
        self.live = []  # live slots, oldest (boot, seq) first
        self.next = 0  # where the next record goes
        self.max_boot = 0  # highest boot number in any valid record
        self.corrupt = 0  # records found torn or damaged (since boot)

    def has_room(self, kind):
        return self.slots - len(self.live) > (self.reserve if kind == UNINVITED else 0)

    def append(self, boot, seq, kind, score, reasons, invitation, time, uptime):
        """Write one record and make it durable. Return its slot, or -1 when
        the full policy refuses it. Raise ValueError if it cannot fit a
        slot (callers check sizes when they accept an invitation)."""
        if not self.has_room(kind):
            return -1
        buf = self.buf
        struct.pack_into(REC, buf, 3, boot, seq, kind, score,
                         time & 0xFFFFFFFF, uptime & 0xFFFFFFFF)
        p = _put(buf, 3 + REC_LEN, invitation)
        buf[p] = len(reasons)
        p += 1
        for r in reasons:
            p = _put(buf, p, r)
        buf[0] = LIVE
        buf[1] = (p - 3) & 0xFF
        buf[2] = (p - 3) >> 8
        struct.pack_into("<I", buf, p, binascii.crc32(memoryview(buf)[1:p]) & 0xFFFFFFFF)
        s = self.next
        while self.is_live[s]:
            s = (s + 1) % self.slots
        self.f.seek(s * SLOT)
        self.f.write(memoryview(buf)[: p + 4])
        # On the unix port flush() is the durability point: MicroPython's
        # posix file flush() calls fsync() (there is no os.fsync). On
        # littlefs/FAT boards flush() commits the file's metadata.
        self.f.flush()
        self.is_live[s] = 1
        self.live.append(s)  # ids only grow within a boot: newest last
        self.max_boot = max(self.max_boot, boot)
        self.next = (s + 1) % self.slots
        return s

    def ack(self, boot, seq):
        """Mark the live record (boot, seq) acknowledged; return its slot,
        or -1 if no live record has that id. An ACK lost to a power cut
        only means a resend and a duplicate the gateway ACKs again, so the
        caller flushes once per ACK frame (self.f.flush()).

        Ids are read back from flash rather than kept in RAM (8 bytes a
        slot would be 2-4 KB of a 64 KB heap); ACKs name the oldest live
        records, which come first in `live`, so few slots are read."""
        live = self.live
        f = self.f
        key = self.key
        for i in range(len(live)):
            s = live[i]
            f.seek(s * SLOT + 3)
            f.readinto(key)
            if struct.unpack("<II", key) == (boot, seq):
                f.seek(s * SLOT)
                f.write(b"A")
                self.is_live[s] = 0
                live.pop(i)
                return s
        return -1

    def read(self, s):
        """(boot, seq, kind, score, time, uptime, invitation, reasons)."""
        buf = self.buf
        self.f.seek(s * SLOT)
        self.f.readinto(buf)
        texts = []
        p = 3 + REC_LEN
        for k in range(1 + buf[4 + REC_LEN + buf[3 + REC_LEN]]):
            if k == 1:
                p += 1  # the reason count
            n = buf[p]
            texts.append(bytes(buf[p + 1 : p + 1 + n]).decode())
            p += 1 + n
        return struct.unpack_from(REC, buf, 3) + (texts[0], texts[1:])


def size_of(invitation, reasons):
    """Bytes the variable part of a record takes (compare with ROOM)."""
    n = 2 + len(invitation.encode())
    for r in reasons:
        n += 1 + len(r.encode())
    return n


def _put(buf, p, text):
    b = text.encode()
    if p + 1 + len(b) + 5 > SLOT:
        raise ValueError("record too long")
    buf[p] = len(b)
    buf[p + 1 : p + 1 + len(b)] = b
    return p + 1 + len(b)
