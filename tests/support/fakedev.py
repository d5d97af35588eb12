"""A fake evaluator that speaks the wire protocol (docs/link.md) from Python.

Not the firmware: a small, scriptable peer for gateway tests and the
simulator. It keeps a journal of unacknowledged events, tags frames once it
holds a key, checks the gateway's tags and replay order, and records what
the gateway sent it.

    pty = PtyTransport()                    # gateway opens pty.path
    dev = FakeDevice("EV-1", pty, boot=3)
    dev.hello(); dev.wait(lambda: dev.config is not None)
    inv = ...                               # the gateway sends invite
    dev.wait(lambda: dev.invitation)
    dev.rate(5); dev.wait(lambda: not dev.journal)   # ACKed

Transports: `PtyTransport` (a raw pty pair; the gateway opens the slave
path) and `MqttTransport` (the gateway's up/down topics on a broker).
"""

import collections
import os
import queue
import select
import time
import tty

from gateway.devices.keys import Key
from protocol import frame as _frame
from protocol import messages as M
from protocol.errors import ProtocolError
from protocol.reader import Reader


class PtyTransport:
    """A pty pair: the device holds the master, the gateway opens `path`."""

    def __init__(self, link_dir=None, name=None):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # before anything is written (docs/design.md §7)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.link = None
        if link_dir is not None:  # a stable name, like /dev/serial/by-id/...
            self.link = os.path.join(link_dir, name)
            os.symlink(self.path, self.link)
        self.dropped = 0

    @property
    def name(self):
        return self.link or self.path

    def write(self, data):
        view = memoryview(bytes(data))
        deadline = time.monotonic() + 1.0
        while view:
            try:
                n = os.write(self.master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.dropped += 1
                    return
                select.select([], [self.master], [], 0.05)
            except OSError:
                self.dropped += 1
                return

    def read(self, timeout):
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return b""
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return b""

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link:
            try:
                os.unlink(self.link)
            except OSError:
                pass


class MqttTransport:
    """The device side of the gateway's MQTT ingest topics."""

    def __init__(self, port, device_id, hall="hall-1", prefix="hcp", host="127.0.0.1", username=None,
                 password=None, ca=None):
        import paho.mqtt.client as mqtt

        self.q = queue.SimpleQueue()
        self.up = "%s/%s/dev/%s/up" % (prefix, hall, device_id)
        self.down = "%s/%s/dev/%s/down" % (prefix, hall, device_id)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fake-%s" % device_id)
        if username:  # a hall broker set up by `hcp gateway broker-config`
            self.client.username_pw_set(username, password)
        if ca:
            self.client.tls_set(ca_certs=ca)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.down, qos=1)
        self.client.on_message = lambda c, u, m: self.q.put(m.payload)
        self.client.connect("127.0.0.1" if host is None else host, port)
        self.client.loop_start()
        deadline = time.monotonic() + 5
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the subscription

    name = "mqtt"

    def write(self, data):
        self.client.publish(self.up, bytes(data), qos=1)

    def read(self, timeout):
        try:
            first = self.q.get(timeout=timeout)
        except queue.Empty:
            return b""
        out = bytearray(first)
        while True:
            try:
                out += self.q.get_nowait()
            except queue.Empty:
                return bytes(out)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class FakeDevice:
    def __init__(self, device_id, transport, boot=1, key=None, staff_id="", fw="fake-0.1",
                 board="sim", clock=True):
        self.device_id = device_id
        self.t = transport
        self.boot = boot
        self.seq = 0
        self.event_seq = 0
        self.key = Key(key) if key else None
        self.staff_id = staff_id
        self.window = ""
        self.fw = fw
        self.board = board
        self.clock = clock  # False: the device clock was never set (time = 0)
        self.started = time.monotonic()
        self.reader = Reader()
        self.gw_replay = _frame.Replay()
        self.journal = collections.OrderedDict()  # (boot, event_seq) -> event dict
        self.acked = []  # ids in the order acks named them (duplicates kept)
        self.received = []  # every accepted message from the gateway
        self.refused = collections.Counter()  # kind -> frames from the gateway we refused
        self.invitation = None  # {"invitation", "cases", "timeout_s"}
        self.config = None
        self.time = None
        self.bitmaps = {}  # slot -> bytearray
        self.unbound = 0
        self.confirm = True  # answer commands with `done`, as the firmware does
        self.closed = []  # invitations this device closed: a resent invite must not reopen them

    # --- sending -------------------------------------------------------------
    def uptime_ms(self):
        return int((time.monotonic() - self.started) * 1000)

    def now(self):
        return int(time.time()) if self.clock else 0

    def set_key(self, raw):
        """What the technician's tool does over USB (hcp tool provision)."""
        self.key = Key(raw) if raw else None

    def send(self, msg, key="own", session=None, seq=None):
        """Encode and write one message. key="own" tags with the device key
        (if any); None sends untagged; a gateway.devices.keys.Key forges with that key."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        msg = dict(msg, session=self.boot if session is None else session, seq=seq)
        k = self.key if key == "own" else key
        data = M.encode(msg, k)
        self.t.write(data)
        return data

    def hello(self, paired=None, **kw):
        self.t.write(b"\x00")
        return self.send({"type": "hello", "device_id": self.device_id, "fw": self.fw,
                          "board": self.board, "boot": self.boot, "journal_depth": len(self.journal),
                          "uptime_ms": self.uptime_ms(), "staff_id": self.staff_id,
                          "paired": (1 if self.key else 0) if paired is None else paired}, **kw)

    def health(self, stuck=0, display_fault=0, **kw):
        return self.send({"type": "health", "device_id": self.device_id, "uptime_ms": self.uptime_ms(),
                          "time": self.now(), "free_heap": 40000, "journal_depth": len(self.journal),
                          "journal_free": 500 - len(self.journal), "dropped": 0, "corrupt": 0,
                          "uninvited": 0, "stuck": stuck, "fw": self.fw, "staff_id": self.staff_id,
                          "display_fault": display_fault, "rx_overruns": 0}, **kw)

    def event(self, kind, score=0, reasons=(), invitation="", **kw):
        self.event_seq += 1
        ev = {"type": "event", "device_id": self.device_id, "boot": self.boot,
              "event_seq": self.event_seq, "kind": kind, "score": score, "reasons": list(reasons),
              "invitation": invitation, "time": self.now(), "uptime_ms": self.uptime_ms()}
        self.journal[(self.boot, self.event_seq)] = ev
        self.send(ev, **kw)
        return (self.boot, self.event_seq)

    def rate(self, score, reasons=()):
        """The citizen completes a rating of the open invitation."""
        inv = self.invitation
        assert inv is not None, "no open invitation"
        self.invitation = None
        self.closed.append(inv["invitation"])
        return self.event("rating", score, reasons, inv["invitation"])

    def timeout(self):
        inv = self.invitation
        assert inv is not None, "no open invitation"
        self.invitation = None
        self.closed.append(inv["invitation"])
        return self.event("unrated", 0, (), inv["invitation"])

    def press(self, score):
        """A press with no invitation open: an uninvited event (audit)."""
        return self.event("uninvited", score)

    def resend(self):
        """Resend every unacknowledged event (oldest first), as after a reboot
        or a backoff timer."""
        for ev in list(self.journal.values()):
            self.send(ev)

    def reboot(self):
        """A new session: boot + 1, frame seq from 1, journal kept."""
        self.boot += 1
        self.seq = 0
        self.event_seq = 0
        self.started = time.monotonic()
        self.gw_replay = _frame.Replay()
        self.reader = Reader()

    # --- receiving -----------------------------------------------------------
    def poll(self, timeout=0.05):
        data = self.t.read(timeout)
        if not data:
            return 0
        n = 0
        for packet in self.reader.packets(data):
            try:
                fr = _frame.decode(packet)
                if self.key is not None:
                    fr.verify(self.key)
                msg = M.parse(fr)
                self.gw_replay.accept(fr)
            except ProtocolError as err:
                self.refused[err.kind] += 1
                continue
            self.received.append(msg)
            self._handle(msg)
            n += 1
        return n

    COMMANDS = ("invite", "cancel", "time", "bind", "unbind", "bitmap", "config")

    def _handle(self, msg):
        self._apply(msg)
        if self.confirm and msg["type"] in self.COMMANDS:
            self.send({"type": "done", "device_id": self.device_id, "ref_seq": msg["seq"]})

    def _apply(self, msg):
        t = msg["type"]
        if t == "ack":
            if msg["device_id"] != self.device_id:
                self.refused["ack_other"] += 1
                return
            for i in msg["ids"]:
                self.acked.append(tuple(i))
                self.journal.pop(tuple(i), None)
        elif t == "bind":
            self.staff_id = msg["staff_id"]
            self.window = msg["window"]
        elif t == "unbind":
            self.staff_id = ""
            self.window = ""
            self.unbound += 1
        elif t == "invite":
            if msg["invitation"] in self.closed or (
                    self.invitation and self.invitation["invitation"] == msg["invitation"]):
                return  # a resend: already open, or answered (一次一评)
            if self.invitation is not None:  # the old one closes as unrated
                self.timeout()
            self.invitation = {"invitation": msg["invitation"], "cases": msg["cases"],
                               "timeout_s": msg["timeout_s"]}
        elif t == "cancel":
            if self.invitation and self.invitation["invitation"] == msg["invitation"]:
                self.closed.append(msg["invitation"])
                self.invitation = None
        elif t == "config":
            self.config = msg
        elif t == "time":
            self.time = msg
        elif t == "bitmap":
            img = self.bitmaps.setdefault(msg["slot"], bytearray((msg["width"] + 7) // 8 * msg["height"]))
            img[msg["offset"]:msg["offset"] + len(msg["data"])] = msg["data"]

    def wait(self, cond, timeout=5.0):
        """Poll until cond() is true; raise AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting on %s" % self.device_id)
            self.poll(0.02)
        return True

    def got(self, mtype):
        return [m for m in self.received if m["type"] == mtype]
