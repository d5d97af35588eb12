"""The fast simulator runs the firmware, not a port of it.

1. Trace parity: one scripted session — hello, time and config from the
   gateway, pairing (bind and a bitmap), an invitation rated 5★, a 差评 with
   two reasons, an invitation that times out, an uninvited press, an ACK
   lost twice and the event retransmitted on the firmware's backoff, a power
   cut with an event not acknowledged and the reboot that resends it — run
   on the real MicroPython VM (the installed .mpy bundle at 64K, its UART a
   pty) and on a fast device (simulator/fastdev.py, on a virtual clock),
   against the same scripted gateway peer. Both put the same frames on the
   wire: the same packets in the same order (the delimiters too), every
   message equal once its time fields are masked (uptime_ms, time, and
   free_heap, which only the VM has), and the frames that carry no time
   (done) equal byte for byte, tag and CRC included. Silences are part of
   the script ("nothing for 0.6 s after a lost ACK"), and the retransmit
   gaps are compared (exact on the virtual clock, on the VM's real one
   within 0.4 s early and 2.5 s late), so the backoff is held too.
2. No second implementation of the link: the fast device's link is a module
   built from firmware/link.py's code, a copy of its own; simulator/ defines
   no hello/poll/retransmit; the fast device never loads the gateway's codec.
3. simulator/fastvm.py's lists are true to the sources: every module with
   state is copied per device, the shared ones hold none and import none
   that is.
4. The fast board's line is bounded: what does not fit is dropped and
   counted where the firmware reports a full UART ring.
"""

import ast
import os
import pathlib
import select
import sys
import threading
import time
import tty

import pytest
from support.simdevice import SimDevice, install

from protocol import messages
from protocol.hmac256 import Key
from simulator import fastvm
from simulator.fastdev import FastDevice, VirtualClock
from tools.provision import write_key_dir

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY = bytes(range(100, 132))
DEVICE = "EV-PARITY"
SESSION = 4242  # the gateway's session
CLOCK = 1795000000
CONFIG = {"type": "config", "invite_timeout_s": 30, "heartbeat_s": 3600, "stuck_ms": 5000,
          "reasons_version": "p1", "reasons": ["R1", "R2", "R3", "R4", "R5"]}
# Fields that depend on when (or on which heap) a frame was made.
TIMED = {"hello": ("uptime_ms",), "event": ("time", "uptime_ms"),
         "health": ("uptime_ms", "time", "free_heap")}


class Peer:
    """The scripted gateway, the same for both devices: frames out through
    `transmit` (set by the rig), bytes in through feed(). Every event is
    ACKed unless `drop_acks` says to lose the next ones."""

    def __init__(self, clock):
        self.clock = clock  # ms, the rig's
        self.key = Key(KEY)
        self.seq = 0
        self.transmit = None
        self.packets = []  # (arrival ms, raw packet, message or None when empty)
        self.drop_acks = 0
        self.errors = []
        self.cond = threading.Condition()
        self.lock = threading.Lock()
        self._part = bytearray()

    def send(self, msg):
        with self.lock:  # the test's thread and the VM rig's reader (ACKs)
            self.seq += 1
            self.transmit(messages.encode(dict(msg, session=SESSION, seq=self.seq), self.key))
            return self.seq

    def feed(self, data):
        acks = []
        with self.cond:
            self._part += data
            while True:
                i = self._part.find(b"\x00")
                if i < 0:
                    break
                raw = bytes(self._part[:i])
                del self._part[:i + 1]
                msg = None
                if raw:
                    try:
                        msg = messages.decode(raw, self.key)
                    except Exception as err:  # noqa: BLE001  (reported by the test)
                        self.errors.append(repr(err))
                        continue
                self.packets.append((self.clock(), raw, msg))
                if msg is not None and msg["type"] == "event":
                    if self.drop_acks:
                        self.drop_acks -= 1
                    else:
                        acks.append([msg["boot"], msg["event_seq"]])
            self.cond.notify_all()
        for ids in acks:
            self.send({"type": "ack", "device_id": DEVICE, "ids": [ids]})

    def frames(self, start=0):
        with self.cond:
            return [p for p in self.packets[start:] if p[2] is not None]

    def mark(self):
        with self.cond:
            return len(self.packets)


class VmRig:
    """The real firmware: micropython at 64K, the installed bundle, a pty."""

    def __init__(self, tmp_path, fw_cache):
        self.peer = Peer(lambda: time.monotonic() * 1000.0)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # raw before anything is written (docs/design.md §7)
        self.peer.transmit = lambda raw: os.write(self.master, raw)
        flash = tmp_path / "vm"
        main = install(flash, fw_cache)
        write_key_dir(flash, KEY)
        self.dev = SimDevice(flash, os.ttyname(self.slave), device_id=DEVICE, main=main)
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop:
            try:
                if not select.select([self.master], [], [], 0.05)[0]:
                    continue
                data = os.read(self.master, 65536)
            except OSError:  # no slave open (a power cut)
                time.sleep(0.01)
                continue
            self.peer.feed(data)

    def power_on(self):
        self.dev.start()

    def power_cut(self):
        self.dev.kill()

    def press(self, stars):
        self.dev.press(stars)

    def screen(self):
        return self.dev.screen()

    def wait(self, what, pred, ms):
        deadline = time.monotonic() + ms / 1000.0
        while not pred():
            assert self.dev.alive(), "firmware exited:\n" + self.dev.output()
            assert time.monotonic() < deadline, what + "\n" + self.dev.output()[-2000:]
            time.sleep(0.005)

    def quiet(self, ms, since):
        time.sleep(max(0.0, since + ms - self.peer.clock()) / 1000.0)

    def close(self):
        self.dev.kill()
        self._stop = True
        self._thread.join(2)
        os.close(self.master)
        os.close(self.slave)


class FastRig:
    """A fast device on a virtual clock; the rig is its transport."""

    def __init__(self, tmp_path):
        self.clock = VirtualClock(7_000_000)
        self.peer = Peer(self.clock)
        self.up = []  # device -> peer payloads
        self.down = []  # peer -> device frames
        self.peer.transmit = self.down.append
        self.due = None
        flash = tmp_path / "fast"
        write_key_dir(flash, KEY)
        self.dev = FastDevice("fast", flash, DEVICE, self, board="sim", clock=self.clock)

    # the transport's interface (simulator/fastlink.MqttTransport's)
    def publish(self, dev, data):
        self.up.append(data)

    def schedule(self, dev, ms):
        self.due = self.clock.now + ms

    def _pump(self):
        moved = True
        while moved:
            moved = False
            while self.up:
                self.peer.feed(self.up.pop(0))
                moved = True
            while self.down and self.dev.running:
                self.dev.receive(self.down.pop(0))
                moved = True

    def power_on(self):
        self.dev.start()
        self._pump()

    def power_cut(self):
        self.dev.power_cut()

    def press(self, stars):
        self.dev.press(stars)
        self._pump()

    def screen(self):
        return self.dev.state()

    def _until(self, end, pred):
        # Turns as they fall due, the clock jumping to each.
        while True:
            self._pump()
            if pred():
                return True
            if self.due is None or self.due > end:
                self.clock.now = max(self.clock.now, end)
                return False
            self.clock.now = max(self.clock.now, self.due)
            self.due = None
            self.dev.turn()

    def wait(self, what, pred, ms):
        assert self._until(self.clock.now + ms, pred), what

    def quiet(self, ms, since):
        self._until(since + ms, lambda: False)

    def close(self):
        self.dev.power_cut()


def _types(peer, mark):
    return [m["type"] for _, _, m in peer.frames(mark)]


def _expect(rig, then, act=None, ms=8000):
    """Do `act`, then wait until exactly the frames `then` (types) came."""
    mark = rig.peer.mark()
    if act is not None:
        act()
    rig.wait("expected %s" % then, lambda: len(_types(rig.peer, mark)) >= len(then), ms)
    got = _types(rig.peer, mark)
    assert got == then, "expected %s, got %s" % (then, got)
    return rig.peer.frames(mark)


def _command(rig, msg, then=("done",)):
    sent = []
    frames = _expect(rig, list(then), lambda: sent.append(rig.peer.send(msg)))
    assert frames[0][2]["ref_seq"] == sent[0], (frames[0][2], sent)
    return frames


def _screen(rig, view):
    rig.wait("screen %r (it is %r)" % (view, rig.screen()), lambda: rig.screen() == view, 8000)


def _nothing_for(rig, ms, since):
    """No frame for `ms` after `since` (when the last one arrived)."""
    rig.quiet(ms, since)
    early = [(round(t - since), m["type"]) for t, _, m in rig.peer.frames() if since < t < since + ms]
    assert not early, "frames within %d ms: %s" % (ms, early)


def session(rig):
    """The script. Waits are for frames or the screen, never for time alone,
    so the VM's real clock and the fast device's virtual one see the same."""
    p = rig.peer
    _expect(rig, ["hello"], rig.power_on)  # boot 1: keyed, not paired yet
    _command(rig, {"type": "time", "time": CLOCK, "tz_min": 480}, ("done", "health"))
    _command(rig, CONFIG)
    _command(rig, {"type": "bind", "staff_id": "S0042", "window": "W07"}, ("done", "health"))
    _screen(rig, "idle")
    card = bytes([0xFF, 0xFF] + [0x80, 0x01] * 6 + [0xFF, 0xFF])  # 16 x 8
    _command(rig, {"type": "bitmap", "slot": 0, "width": 16, "height": 8, "offset": 0, "data": card})

    # An invitation rated 5★ (ACKed).
    _command(rig, {"type": "invite", "invitation": "INV-1", "cases": ["C-1"], "timeout_s": 30})
    _screen(rig, "invited")
    _expect(rig, ["event"], lambda: rig.press(5))
    _screen(rig, "thanks")

    # A 差评: 2★, then R1 (key 1), next page (key 5), R5 (key 1), confirm (key 5).
    _command(rig, {"type": "invite", "invitation": "INV-2", "cases": ["C-2", "C-3"], "timeout_s": 30})
    _screen(rig, "invited")
    rig.press(2)
    _screen(rig, "reasons")
    _expect(rig, ["event"], lambda: [rig.press(s) for s in (5, 1, 5, 1)])
    _screen(rig, "thanks")

    # An invitation nobody rates: unrated after its 1 s.
    _command(rig, {"type": "invite", "invitation": "INV-3", "cases": ["C-4"], "timeout_s": 1})
    _expect(rig, ["event"], ms=5000)
    _screen(rig, "idle")

    # A press with no invitation: audit only.
    _expect(rig, ["event"], lambda: rig.press(3))

    # Two ACKs lost: the same event again after 1 s, then 2 s (link.py's backoff).
    _command(rig, {"type": "invite", "invitation": "INV-4", "cases": ["C-5"], "timeout_s": 30})
    _screen(rig, "invited")
    p.drop_acks = 2
    first = _expect(rig, ["event"], lambda: rig.press(4))[0]
    _nothing_for(rig, 600, first[0])
    again = _expect(rig, ["event"], ms=5000)[0]
    _nothing_for(rig, 1500, again[0])
    last = _expect(rig, ["event"], ms=5000)[0]
    assert first[2] == dict(again[2], seq=first[2]["seq"]) == dict(last[2], seq=first[2]["seq"])

    # A power cut with an event on flash that no ACK reached; the reboot resends it.
    _command(rig, {"type": "invite", "invitation": "INV-5", "cases": ["C-6"], "timeout_s": 30})
    _screen(rig, "invited")
    p.drop_acks = 1
    _expect(rig, ["event"], lambda: rig.press(5))
    rig.power_cut()
    _expect(rig, ["hello"], rig.power_on)  # boot 2, one event in the journal
    _command(rig, {"type": "time", "time": CLOCK + 60, "tz_min": 480}, ("done", "event", "health"))
    _command(rig, CONFIG)
    _screen(rig, "idle")
    assert not p.errors, p.errors
    return p.packets


def _normal(msg):
    if msg is None:
        return None
    return {k: ("<t>" if k in TIMED.get(msg["type"], ()) else v) for k, v in msg.items()}


@pytest.fixture(scope="module")
def fw_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fw-mpy")


def test_vm_and_fast_device_put_the_same_frames_on_the_wire(tmp_path, fw_cache):
    fast = FastRig(tmp_path)
    try:
        fast_trace = session(fast)
    finally:
        fast.close()
    vm = VmRig(tmp_path, fw_cache)
    try:
        vm_trace = session(vm)
    finally:
        vm.close()
    # The same packets, in the same order, the empty ones (a delimiter
    # closing whatever came before the hello) included.
    assert [_normal(m) for _, _, m in fast_trace] == [_normal(m) for _, _, m in vm_trace]
    # Byte for byte where no time is carried.
    untimed = [(f[1], v[1]) for f, v in zip(fast_trace, vm_trace, strict=True)
               if f[2] is not None and f[2]["type"] not in TIMED]
    assert len(untimed) == 11 and all(a == b for a, b in untimed)
    kinds = [(m["kind"], m["score"], m["reasons"], m["invitation"], m["boot"])
             for _, _, m in vm_trace if m is not None and m["type"] == "event"]
    assert kinds == [("rating", 5, [], "INV-1", 1), ("rating", 2, ["R1", "R5"], "INV-2", 1),
                     ("unrated", 0, [], "INV-3", 1), ("uninvited", 3, [], "", 1),
                     ("rating", 4, [], "INV-4", 1), ("rating", 4, [], "INV-4", 1),
                     ("rating", 4, [], "INV-4", 1), ("rating", 5, [], "INV-5", 1),
                     ("rating", 5, [], "INV-5", 1)]
    # The retransmit backoff (1 s, then 2 s): exact on the virtual clock; on
    # the VM's real one never sooner (the script's silences) and not much later.
    def gaps(trace):
        t = [at for at, _, m in trace if m is not None and m.get("invitation") == "INV-4"
             and m["type"] == "event"]
        return [round(b - a) for a, b in zip(t, t[1:], strict=False)]

    assert gaps(fast_trace) == [1000, 2000]
    for f, v in zip(gaps(fast_trace), gaps(vm_trace), strict=True):
        assert f - 400 <= v <= f + 2500, (gaps(fast_trace), gaps(vm_trace))
    hellos = [m for _, _, m in fast_trace if m is not None and m["type"] == "hello"]
    assert [(h["boot"], h["journal_depth"], h["staff_id"]) for h in hellos] == [(1, 0, ""), (2, 1, "S0042")]


# -- no second link ------------------------------------------------------------------


def _defs(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_the_fast_device_link_is_firmware_link_py(tmp_path):
    class Sink:
        def publish(self, dev, data):
            pass

        def schedule(self, dev, ms):
            pass

    devs = []
    for i in range(2):
        flash = tmp_path / ("d%d" % i)
        write_key_dir(flash, KEY)
        devs.append(FastDevice("d%d" % i, flash, "EV-L%d" % i, Sink(), clock=VirtualClock()).start())
    a, b = (d.link for d in devs)
    src = str(ROOT / "firmware" / "link.py")
    assert a.__file__ == src and a.__name__ == "firmware.link"
    for name in ("hello", "poll", "receive", "acked", "health", "start", "due", "out"):
        assert getattr(a, name).__code__.co_filename == src
        assert getattr(a, name).__code__ is getattr(b, name).__code__  # compiled once
    assert a is not b and a.__dict__ is not b.__dict__  # each device its own globals
    assert a is not sys.modules.get("firmware.link")
    assert devs[0].app.link is a and a.dev is devs[0].app and b.dev is devs[1].app
    assert a.rx is not b.rx and a.rx.buf is not b.rx.buf and a.tx.buf is not b.tx.buf
    # The gateway's codec never loaded by a device.
    for d in devs:
        assert not {"protocol.messages", "protocol.frame", "protocol.cobs", "protocol.reader",
                    "protocol.fields"} & set(d.ram.mods)
    # simulator/ has no link of its own.
    link_names = {"hello", "poll", "acked", "health", "retransmit", "DevLink", "_packet"}
    for path in sorted((ROOT / "simulator").glob("*.py")):
        assert not _defs(path) & link_names, (path.name, _defs(path) & link_names)
    for name in ("fastdev.py", "fastvm.py", "fastlink.py"):
        text = (ROOT / "simulator" / name).read_text()
        assert "protocol.messages" not in text and "from protocol" not in text, name


def test_shared_modules_hold_no_state():
    """What fastvm shares between devices has no state and binds nothing
    that is per device; what has state is copied per device."""

    def facts(name):
        tree = ast.parse(fastvm.source(name).read_text(encoding="utf-8"))
        state = any(isinstance(n, ast.Global) for n in ast.walk(tree)) or name in written
        for node in tree.body:  # module-level mutable objects
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                v = node.value
                if isinstance(v, (ast.List, ast.Set, ast.ListComp, ast.SetComp)) or (
                        isinstance(v, ast.Call) and getattr(v.func, "id", "") in ("bytearray", "list", "set")):
                    state = True
        imported = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module:
                imported.add(n.module)
                imported.update(n.module + "." + a.name for a in n.names)
            elif isinstance(n, ast.Import):
                imported.update(a.name for a in n.names)
        return state, imported

    # Modules whose globals others set (boot.py: store.ROOT = ..., app.hal = ...).
    written = set()
    for path in list((ROOT / "firmware").glob("*.py")) + list((ROOT / "protocol").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {}
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module in ("firmware", "protocol"):
                names.update({a.asname or a.name: n.module + "." + a.name for a in n.names})
        for n in ast.walk(tree):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AugAssign) else []
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in names:
                    written.add(names[t.value.id])
    assert {"firmware.store", "firmware.app"} <= written, written
    for name in fastvm.SHARED:
        state, imported = facts(name)
        assert not state, "%s has state: it must be in fastvm.PER_DEVICE" % name
        assert not imported & fastvm.PER_DEVICE, (name, imported & fastvm.PER_DEVICE)
    for name in ("firmware.app", "firmware.link", "firmware.store", "protocol.rx", "protocol.tx"):
        assert facts(name)[0] and name in fastvm.PER_DEVICE
    # Every module the sim board's firmware loads (main.py's imports, followed;
    # the board's own modules are fastdev's) is one of the two.
    todo = ["firmware.main"]
    reached = set()
    while todo:
        for m in facts(todo.pop())[1]:
            if m.startswith(("firmware.", "protocol.")) and m not in reached \
                    and fastvm.source(m).exists() and m not in fastvm.BOARD | {"firmware.hal_machine"}:
                reached.add(m)
                todo.append(m)
    assert {"firmware.link", "protocol.rx", "firmware.orders", "firmware.rating"} <= reached, reached
    assert reached <= fastvm.PER_DEVICE | fastvm.SHARED, reached - fastvm.PER_DEVICE - fastvm.SHARED


def test_a_full_inbox_drops_and_health_says_so(tmp_path, monkeypatch):
    """The fast board's line holds at most INBOX bytes: a payload beyond is
    dropped, counted, and reported as health's rx_overruns (the firmware's
    own field for a full UART ring); the gateway's resend covers it."""
    from simulator import fastdev

    class Wire:
        def __init__(self):
            self.up = []

        def publish(self, dev, data):
            self.up.append(data)

        def schedule(self, dev, ms):
            pass

    wire = Wire()
    write_key_dir(tmp_path, KEY)
    dev = FastDevice("d", tmp_path, DEVICE, wire, clock=VirtualClock()).start()
    key = Key(KEY)
    monkeypatch.setattr(fastdev, "INBOX", 64)
    bitmap = messages.encode({"type": "bitmap", "session": 5, "seq": 1, "slot": 0, "width": 16,
                              "height": 8, "offset": 0, "data": bytes(16)}, key)
    dev.hal.hear(bitmap * 3)  # more than the line holds: dropped whole
    assert dev.hal.overruns == 1 and not dev.hal.pending()
    dev.receive(messages.encode({"type": "time", "session": 5, "seq": 2, "time": CLOCK, "tz_min": 0}, key))
    got = [messages.decode(p, key) for data in wire.up for p in data.split(b"\x00") if p]
    health = [m for m in got if m["type"] == "health"]
    assert [m["type"] for m in got] == ["hello", "done", "health"] and health[0]["rx_overruns"] == 1
