"""A test-side gateway peer for firmware tests and the simulator: it holds
the master side of a pty, speaks the wire protocol (protocol/), and does
what docs/link.md asks of a gateway, with switches to misbehave.

    gw = FakeGateway()                  # gw.path: the pty for --uart
    ...start the firmware on gw.path...
    hello = gw.wait_for("hello")
    gw.send({"type": "invite", "invitation": "INV-1", "cases": ["C1"], "timeout_s": 10})
    ev = gw.wait_for("event", lambda m: m["invitation"] == "INV-1")
    gw.close()

A reader thread decodes every frame, keeps them in `frames` (oldest first),
answers `hello` with `time` and `config` (when `config` is set) and ACKs
events when `auto_ack` is on. `drop_acks = n` swallows the next n ACKs (a
lost ACK). `key` is the device key once paired: frames are then tagged
both ways and untagged ones from the device are refused and counted in
`reader.errors`."""

import os
import select
import threading
import time
import tty

from gateway.devices.keys import Key
from protocol import frame as _frame
from protocol import messages
from protocol.errors import ProtocolError
from protocol.reader import Reader


class FakeGateway:
    def __init__(self, session=1000, auto_ack=True, config=None, clock=1795000000):
        self.master, self.slave = os.openpty()
        # The slave must be raw before anything is written (docs/design.md §7).
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.session = session
        self.seq = 0
        self.key = None
        self.auto_ack = auto_ack
        self.drop_acks = 0
        self.config = config
        self.clock = clock
        self.frames = []
        self.events = {}  # (device_id, boot, event_seq) -> event message
        self.duplicates = 0  # events received again (retransmissions)
        self.conflicts = 0  # an event id seen again with other contents: id reuse
        self.replays = 0  # device frames whose (session, seq) did not grow
        self.refused = {}  # error kind -> count (bad CRC, untagged, bad tag...)
        self._replay = {}  # device_id -> protocol.frame.Replay
        self._cond = threading.Condition()
        self._wlock = threading.Lock()
        self._stop = False
        self.reader = Reader(key_for=lambda fr: self.key)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # --- sending ------------------------------------------------------------

    def set_key(self, raw):
        self.key = Key(raw) if raw else None

    def send(self, msg, key="default", raw=None):
        """Send a gateway message (session/seq filled in). `key` overrides the
        tagging key (None: untagged); `raw` sends bytes as they are."""
        with self._wlock:
            if raw is None:
                self.seq += 1
                msg = dict(msg, session=self.session, seq=self.seq)
                raw = messages.encode(msg, self.key if key == "default" else key)
            os.write(self.master, raw)
        return msg

    def command(self, msg, tries=8, wait_s=1.0):
        """Send a command as the real gateway does: again (new seq) until the
        device answers `done` naming it; return the `done`. A device short of
        heap may drop a frame, and only confirmation proves it arrived."""
        for _ in range(tries):
            mark = self.mark()
            sent = self.send(msg)
            try:
                return self.wait_for("done", where=lambda m, q=sent["seq"]: m["ref_seq"] == q,
                                     timeout=wait_s, start=mark)
            except AssertionError:
                continue
        with self._cond:
            seen = [(m["type"], m.get("code"), m.get("detail"), m.get("free_heap"), m.get("dropped"))
                    for m in self.frames[-12:]]
        raise AssertionError("the device never confirmed %s; last frames %s, refused %s"
                             % (msg["type"], seen, self.refused))

    def ack(self, device_id, ids):
        self.send({"type": "ack", "device_id": device_id, "ids": [list(i) for i in ids]})

    # --- receiving ----------------------------------------------------------

    def _run(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.master], [], [], 0.05)
                if not r:
                    continue
                chunk = os.read(self.master, 65536)
            except OSError:
                # No slave open (the device was killed): the pty reports EIO.
                time.sleep(0.01)
                continue
            for packet in self.reader.packets(chunk):
                try:
                    msg = self._check(packet)
                except ProtocolError as err:
                    with self._cond:
                        self.refused[err.kind] = self.refused.get(err.kind, 0) + 1
                        self._cond.notify_all()
                    continue
                self._handle(msg)

    def _check(self, packet):
        fr = _frame.decode(packet)
        if self.key is not None:
            fr.verify(self.key)
        msg = messages.parse(fr)
        did = msg.get("device_id", "")
        rp = self._replay.get(did)
        if msg["type"] == "hello" and (rp is None or fr.session > rp.session):
            rp = self._replay[did] = _frame.Replay()
        if rp is None:
            rp = self._replay[did] = _frame.Replay()
        try:
            rp.accept(fr)
        except ProtocolError:
            self.replays += 1
            raise
        return msg

    def _handle(self, msg):
        t = msg["type"]
        with self._cond:
            self.frames.append(msg)
            if t == "event":
                eid = (msg["device_id"], msg["boot"], msg["event_seq"])
                if eid in self.events:
                    self.duplicates += 1
                    old = self.events[eid]
                    if any(old[k] != msg[k] for k in ("kind", "score", "reasons", "invitation",
                                                      "time", "uptime_ms")):
                        self.conflicts += 1
                else:
                    self.events[eid] = msg
            self._cond.notify_all()
        if t == "hello":
            self.send({"type": "time", "time": self.clock, "tz_min": 480})
            if self.config is not None:
                self.send(dict(self.config, type="config"))
        elif t == "event" and self.auto_ack:
            if self.drop_acks > 0:
                self.drop_acks -= 1
            else:
                self.ack(msg["device_id"], [(msg["boot"], msg["event_seq"])])

    # --- waiting ------------------------------------------------------------

    def wait(self, predicate, timeout=5.0):
        """Wait until predicate() holds (called under the lock); return its value."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def received(self, mtype, where=None, start=0):
        return [m for m in self.frames[start:]
                if m["type"] == mtype and (where is None or where(m))]

    def wait_for(self, mtype, where=None, timeout=5.0, start=0):
        """The first `mtype` message from index `start` matching `where`;
        AssertionError if none arrives in time."""
        def found():
            got = self.received(mtype, where, start)
            return got[0] if got else None

        msg = self.wait(found, timeout)
        assert msg is not None, "no %s within %.1f s; got %s" % (
            mtype, timeout, [m["type"] for m in self.frames[start:]][-20:])
        return msg

    def mark(self):
        """Index of the next frame to arrive (for wait_for(start=...))."""
        with self._cond:
            return len(self.frames)

    def close(self):
        self._stop = True
        self._thread.join(2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
