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

import binascii
import os
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SLOT = const(256)
_LIVE = const(0x45)  # 'E'
_ACKED = const(0x41)  # 'A'
_REC = "<IIBBII"  # boot, seq, kind, score, time, uptime_ms
_REC_LEN = const(18)
# Bytes a record has for its invitation and reasons (with their lengths).
ROOM = SLOT - 7 - _REC_LEN

RATING = const(1)
UNRATED = const(2)
UNINVITED = const(3)


class Journal:
    def __init__(self, path, slots=256, reserve=-1):
        self.path = path
        self.corrupt = 0  # records found torn or damaged (since boot)
        self.max_boot = 0  # highest boot number in any valid record
        self.buf = bytearray(SLOT)
        try:
            size = os.stat(path)[6]
        except OSError:
            size = 0
            open(path, "wb").close()
        # Never shrink: a smaller setting must not cut off live records.
        n = size // SLOT
        if n < slots:
            n = slots
        self.slots = n
        self.reserve = max(1, n // 16) if reserve < 0 else reserve
        self._ids = bytearray(8 * n)  # (boot, seq) of every slot
        self._live = bytearray(n)  # 1 = slot holds a live record
        self.live = []  # live slots, oldest (boot, seq) first
        self._next = 0  # where the next record goes
        self._f = open(path, "r+b")
        self._scan(size // SLOT)
        if size < n * SLOT:
            self._extend(size // SLOT, n)

    def _scan(self, have):
        f = self._f
        buf = self.buf
        mv = memoryview(buf)
        nb = 0
        nq = 0
        f.seek(0)
        for s in range(have):
            f.readinto(buf)
            st = buf[0]
            if st != _LIVE and st != _ACKED:
                continue
            n = buf[1] | buf[2] << 8
            ok = _REC_LEN + 2 <= n <= SLOT - 7
            if ok:
                (crc,) = struct.unpack_from("<I", buf, 3 + n)
                ok = binascii.crc32(mv[1 : 3 + n]) & 0xFFFFFFFF == crc
            if not ok:
                # Torn or damaged: forget it, on flash too, so it is
                # counted once and its slot is free again.
                self.corrupt += 1
                f.seek(s * SLOT)
                f.write(b"\x00")
                f.seek((s + 1) * SLOT)
                continue
            b, q = struct.unpack_from("<II", buf, 3)
            struct.pack_into("<II", self._ids, 8 * s, b, q)
            if b > self.max_boot:
                self.max_boot = b
            if b > nb or (b == nb and q >= nq):
                nb = b
                nq = q
                self._next = (s + 1) % self.slots
            if st == _LIVE:
                self._live[s] = 1
                self._insert(s, b, q)

    def _insert(self, s, b, q):
        # Slots are read in ring order, which is nearly write order, so this
        # insertion sort moves little; it allocates nothing (a sort with a
        # key would build hundreds of tuples at boot).
        live = self.live
        i = len(live)
        while i > 0:
            pb, pq = struct.unpack_from("<II", self._ids, 8 * live[i - 1])
            if pb < b or (pb == b and pq < q):
                break
            i -= 1
        live.insert(i, s)

    def _extend(self, start, n):
        f = self._f
        f.seek(start * SLOT)
        zero = bytearray(SLOT)
        for _ in range(start, n):
            f.write(zero)
        f.flush()

    def depth(self):
        return len(self.live)

    def free(self):
        return self.slots - len(self.live)

    def has_room(self, kind):
        free = self.slots - len(self.live)
        return free > (self.reserve if kind == UNINVITED else 0)

    def append(self, boot, seq, kind, score, reasons, invitation, time, uptime):
        """Write one record and make it durable. Return its slot, or -1 when
        the full policy refuses it. Raise ValueError if it cannot fit a
        slot (callers check sizes when they accept an invitation)."""
        if not self.has_room(kind):
            return -1
        buf = self.buf
        struct.pack_into(_REC, buf, 3, boot, seq, kind, score,
                         time & 0xFFFFFFFF, uptime & 0xFFFFFFFF)
        p = _put(buf, 3 + _REC_LEN, invitation)
        buf[p] = len(reasons)
        p += 1
        for r in reasons:
            p = _put(buf, p, r)
        n = p - 3
        buf[0] = _LIVE
        buf[1] = n & 0xFF
        buf[2] = n >> 8
        struct.pack_into("<I", buf, p, binascii.crc32(memoryview(buf)[1:p]) & 0xFFFFFFFF)
        s = self._next
        while self._live[s]:
            s = (s + 1) % self.slots
        f = self._f
        f.seek(s * SLOT)
        f.write(memoryview(buf)[: p + 4])
        # On the unix port flush() is the durability point: MicroPython's
        # posix file flush() calls fsync() (there is no os.fsync). On
        # littlefs/FAT boards flush() commits the file's metadata.
        f.flush()
        struct.pack_into("<II", self._ids, 8 * s, boot, seq)
        self._live[s] = 1
        self.live.append(s)  # ids only grow within a boot: newest last
        if boot > self.max_boot:
            self.max_boot = boot
        self._next = (s + 1) % self.slots
        return s

    def ack(self, boot, seq):
        """Mark the live record (boot, seq) acknowledged; return its slot,
        or -1 if no live record has that id. Call sync() after a batch."""
        live = self.live
        for i in range(len(live)):
            s = live[i]
            b, q = struct.unpack_from("<II", self._ids, 8 * s)
            if b == boot and q == seq:
                self._f.seek(s * SLOT)
                self._f.write(b"A")
                self._live[s] = 0
                live.pop(i)
                return s
        return -1

    def sync(self):
        # An ACK lost to a power cut only means the event is sent again and
        # the gateway ACKs the duplicate: one flush per ACK frame is enough.
        self._f.flush()

    def read(self, s):
        """(boot, seq, kind, score, time, uptime, invitation, reasons)."""
        buf = self.buf
        self._f.seek(s * SLOT)
        self._f.readinto(buf)
        b, q, kind, score, t, up = struct.unpack_from(_REC, buf, 3)
        inv, p = _get(buf, 3 + _REC_LEN)
        count = buf[p]
        p += 1
        reasons = []
        for _ in range(count):
            r, p = _get(buf, p)
            reasons.append(r)
        return b, q, kind, score, t, up, inv, reasons

    def close(self):
        self._f.close()


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


def _get(buf, p):
    n = buf[p]
    return bytes(buf[p + 1 : p + 1 + n]).decode(), p + 1 + n
