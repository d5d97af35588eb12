# The link to the gateway (docs/link.md is the contract; protocol/ the bytes).
#
# - Start: one 0x00 (closes any partial frame at the peer), then `hello`,
#   repeated every 2 s, doubling up to 10 s, until any valid frame arrives.
# - Then the journal's unacknowledged events go out oldest first, at most
#   _WINDOW in flight. If no ACK comes, the window is sent again after 1 s,
#   doubling up to 30 s; any ACK resets that to 1 s. After _FORGOTTEN
#   rounds with no frame at all from the gateway the link starts over with
#   hello (the gateway may have lost track of the device).
# - `health` every heartbeat, and at once when a button gets stuck or freed.
# - With a device key every frame out is tagged, and every frame in must be
#   tagged with it: an untagged or badly tagged frame, or a replay of an
#   older (session, seq), is refused with `error` 2 and counted.
#
# Frame seq counts from 1 in each boot; the session is the boot number.
# Messages are built from the protocol's own field table (out()), which
# keeps the field names out of this module: RAM on the device.

import gc

from protocol import frame, messages
from protocol.errors import AuthError, ProtocolError
from protocol.fields import KINDS
from protocol.hmac256 import Key
from protocol.reader import Reader

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_HELLO = const(0x01)
_EVENT = const(0x02)
_HEALTH = const(0x03)
_ERROR = const(0x7F)
_WINDOW = const(8)
_FORGOTTEN = const(3)



class Link:
    def __init__(self, dev):
        self.dev = dev
        self.seq = 0
        self.key = None
        self.reader = Reader()
        self.peer = frame.Replay()  # the gateway's last (session, seq)
        self.up = False  # the gateway has answered since the last hello
        self.sent = bytearray(dev.journal.slots)  # slot sent in this round
        self.t_hello = self.gap = 0
        self.t_retx = 0
        self.backoff = 1000
        self.quiet = 0  # retransmit rounds with nothing heard
        self.t_health = 0
        self.bad = 0  # frames that failed their checks
        self.refused = 0  # frames refused for authentication or replay

    def set_key(self, raw):
        self.key = Key(raw) if raw else None

    def out(self, code, *values):
        """Send message `code` with its fields' values in table order. The
        line being down is no error: hello and retransmission cover it.
        code 0 writes the bare delimiter."""
        try:
            if not code:
                self.dev.hal.write(b"\x00")
                return
            msg = {"type": messages.SCHEMA[code][0]}
            for (name, _), v in zip(messages.fields(code), values):
                msg[name] = v
            self.seq += 1
            msg["session"] = self.dev.boot
            msg["seq"] = self.seq
            self.dev.hal.write(messages.encode(msg, self.key))
        except OSError:
            pass

    def start(self, now):
        """(Re)start the link: delimiter, hello; everything is resent."""
        self.out(0)
        self.up = False
        self.sent = bytearray(len(self.sent))
        self.gap = 2000
        self.hello(now)

    def hello(self, now):
        d = self.dev
        self.out(_HELLO, d.device_id, d.fw, d.board, d.boot, len(d.journal.live),
                 now & 0xFFFFFFFF, d.staff_id, 1 if self.key else 0)
        self.t_hello = now + self.gap
        self.gap = min(self.gap * 2, 10000)

    def health(self, now):
        d = self.dev
        j = d.journal
        gc.collect()
        self.out(_HEALTH, d.device_id, now & 0xFFFFFFFF, d.clock(now), gc.mem_free(), len(j.live),
                 j.slots - len(j.live), d.lost + d.buttons.dropped, j.corrupt,
                 d.ev.uninvited, d.buttons.stuck, d.fw, d.staff_id)
        self.t_health = now + d.heartbeat_ms

    def receive(self, chunk, now):
        """Bytes from the line -> the gateway's valid, authenticated messages."""
        got = []
        for packet in self.reader.packets(chunk):
            try:
                fr = frame.decode(packet)
            except ProtocolError:
                self.bad += 1  # line noise: counted, not answered
                continue
            try:
                if self.key:
                    fr.verify(self.key)
                self.peer.accept(fr)
                if fr.mtype < 0x10:
                    raise ProtocolError("type", "wrong direction")
                got.append(messages.parse(fr))
            except AuthError as err:
                self.refused += 1
                self.out(_ERROR, 2, fr.seq, err.kind)
                continue
            except ProtocolError as err:
                self.bad += 1
                self.out(_ERROR, 3 if err.kind == "type" else 6, fr.seq, err.kind)
                continue
            self.quiet = 0
            if not self.up:
                self.up = True
                self.t_retx = now
        return got

    def poll(self, now):
        if not self.up:
            if now >= self.t_hello:
                self.hello(now)
            return
        d = self.dev
        live = d.journal.live
        k = min(_WINDOW, len(live))
        if k and now >= self.t_retx and self.sent[live[0]]:
            # Nothing acknowledged in time: send the whole window again.
            self.quiet += 1
            if self.quiet > _FORGOTTEN:
                self.quiet = 0
                self.start(now)
                return
            for i in range(k):
                self.sent[live[i]] = 0
            self.backoff = min(self.backoff * 2, 30000)
        for i in range(k):
            s = live[i]
            if self.sent[s]:
                continue
            self.sent[s] = 1
            self.t_retx = now + self.backoff
            b, q, kind, score, t, up, inv, reasons = d.journal.read(s)
            try:
                self.out(_EVENT, d.device_id, b, q, KINDS[kind], score, reasons, inv, t, up)
            except ProtocolError:
                # A record the wire refuses can only be flash damage that
                # kept its CRC: no gateway would ever ACK it, and it must not
                # block the ones behind it. Drop it and count it as corrupt.
                d.journal.ack(b, q)
                d.journal.corrupt += 1
                break
        if now >= self.t_health:
            self.health(now)

    def due(self, now):
        t = self.t_hello
        if self.up:
            t = self.t_health
            live = self.dev.journal.live
            if live and self.sent[live[0]] and self.t_retx < t:
                t = self.t_retx
        return max(0, t - now)
