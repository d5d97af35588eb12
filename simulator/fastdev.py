"""A fast evaluator for `hcp sim fleet --fast`: the firmware's logic modules
under CPython, in-process, thousands to one machine.

This is NOT the real firmware VM (that is simulator/device.py: MicroPython
processes at 64K). What runs here is the firmware's own pure-logic code:

- firmware/rating.py  Evaluator, the 一次一评 state machine
- firmware/journal.py + recover.py  the flash journal, on a real file in the
  device's directory (`journal`), scanned at every power-on
- firmware/buttons.py  debounce, presses on release, stuck detection
- firmware/orders.py  what the device does with each gateway message (ack,
  invite, cancel, time, bind, unbind, config, bitmap), answered `done`

around a port of firmware/link.py to a class (the firmware's link is a module
singleton with one frame buffer; a fleet needs one per device): hello with
capped backoff, a window of 8 events in flight, retransmit 1 s doubling to
30 s, health every heartbeat, every frame tagged with the device key after
pairing, the gateway's (session, seq) replay-checked. Frames are built and
read by protocol.messages (the gateway's codec), and travel over the
gateway's MQTT ingest (simulator/fastlink.py carries them).

The interface is SimDevice's, for the fleet's actors: press / down / up,
state / wait_state, starts, running, power_cut / start / stop. A power cut
drops everything in RAM and the next start reads the journal file back.
"""

import json
import os
import pathlib
import threading
import time
import types

from firmware import VERSION, orders, store
from firmware.buttons import Buttons
from firmware.journal import RATING
from firmware.rating import IDLE, NAMES, Evaluator
from firmware.recover import open_journal
from protocol import frame as _frame
from protocol import messages
from protocol.errors import AuthError, FrameError, ProtocolError
from protocol.hmac256 import Key
from protocol.schema import KINDS
from simulator.device import SimDeviceError

_HELLO, _EVENT, _HEALTH, _ERROR = 0x01, 0x02, 0x03, 0x7F
_WINDOW = 8
_FORGOTTEN = 3
BOARD = "sim-fast"
# orders.py keeps the device's settings through firmware/store.py, whose
# flash root is a module global: one device at a time goes through it.
_STORE_LOCK = threading.Lock()


def _put(name, obj):
    # MicroPython writes a str to a binary file; CPython wants bytes.
    store.atomic(store.ROOT + name + ".json", json.dumps(obj).encode())


# firmware/store.py as orders.py sees it, with put() for CPython.
_STORE = types.SimpleNamespace(get=store.get, put=_put, put_bitmap=store.put_bitmap,
                               drop_bitmap=store.drop_bitmap)


class _Screen:
    w, h = 128, 64  # the sim board's panel (boards.toml [sim.display])


class DevLink:
    """firmware/link.py as an object: one per device."""

    def __init__(self, dev):
        self.dev = dev
        self.seq = 0
        self.key = None
        self.sent = bytearray(dev.journal.slots)
        self.up = False
        self.t_hello = self.gap = self.t_retx = self.t_health = 0
        self.backoff = 1000
        self.quiet = 0
        self.bad = 0
        self.refused = 0
        self.replay = _frame.Replay()  # the gateway's last (session, seq), in RAM

    def set_key(self, raw):
        self.key = Key(raw) if raw else None

    def out(self, code, *values):
        """Send message `code` with its fields' values in table order."""
        if not code:
            return  # MQTT payloads are whole frames: no delimiter to close
        d = self.dev
        self.seq += 1
        msg = {"type": messages.SCHEMA[code][0], "session": d.boot, "seq": self.seq}
        for (name, _), v in zip(messages.fields(code), values, strict=True):
            msg[name] = v
        d.transport.publish(d, messages.encode(msg, self.key))

    def start(self, now):
        self.up = False
        for i in range(len(self.sent)):
            self.sent[i] = 0
        self.gap = 2000
        self.hello(now)

    def hello(self, now):
        d = self.dev
        self.out(_HELLO, d.device_id, VERSION, BOARD, d.boot, len(d.journal.live), now & 0xFFFFFFFF,
                 d.staff_id, 1 if self.key else 0)
        self.t_hello = now + self.gap
        self.gap = min(self.gap * 2, 10000)

    def health(self, now):
        d = self.dev
        j = d.journal
        self.out(_HEALTH, d.device_id, now & 0xFFFFFFFF, d.clock(now), 65536, len(j.live), j.slots - len(j.live),
                 d.lost + d.buttons.dropped, j.corrupt, d.ev.uninvited, d.buttons.stuck, VERSION, d.staff_id)
        self.t_health = now + d.heartbeat_ms

    def receive(self, packet, now):
        if self.key is None:
            self.refused += 1  # unprovisioned: nobody here can be trusted (firmware/link.py)
            return
        try:
            fr = _frame.decode(packet)
            self.last_seq = fr.seq
            if self.key is not None:
                fr.verify(self.key)
            self.replay.accept(fr)
            if fr.mtype < 0x10:
                raise messages.MessageError("type", "wrong direction")
            msg = messages.parse(fr)
        except FrameError:
            self.bad += 1
            return
        except AuthError as err:
            self.refused += 1
            self.out(_ERROR, 2, getattr(self, "last_seq", 0), err.kind)
            return
        except ProtocolError as err:
            self.bad += 1
            self.out(_ERROR, 3 if err.kind == "type" else 6, getattr(self, "last_seq", 0), err.kind)
            return
        self.quiet = 0
        if not self.up:
            self.up = True
            self.t_retx = now
        if msg["type"] in ("bitmap", "config", "bind", "unbind"):
            with _STORE_LOCK:  # orders.py writes settings through firmware/store.py
                store.ROOT = str(self.dev.flash) + os.sep
                orders.store = _STORE
                try:
                    orders.obey(self.dev, msg, now)
                finally:
                    orders.store = store
        else:
            orders.obey(self.dev, msg, now)

    def poll(self, now):
        if not self.up:
            if now >= self.t_hello:
                self.hello(now)
            return
        d = self.dev
        j = d.journal
        live = j.live
        k = min(_WINDOW, len(live))
        if k and now >= self.t_retx and self.sent[live[0]]:
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
            b, q, kind, score, t, up_ms, inv, reasons = j.read(s)
            try:
                self.out(_EVENT, d.device_id, b, q, KINDS[kind], score, reasons, inv, t, up_ms)
            except ProtocolError:
                j.ack(b, q)
                j.corrupt += 1
                break
        if now >= self.t_health:
            self.health(now)

    def acked(self, s, now):
        self.sent[s] = 0
        self.backoff = 1000
        self.t_retx = now + 1000

    def due(self, now):
        t = self.t_hello
        if self.up:
            t = self.t_health
            live = self.dev.journal.live
            if live and self.sent[live[0]] and self.t_retx < t:
                t = self.t_retx
        return max(0, t - now)


class FastDevice:
    """One evaluator, in-process. Thread-safe: actors press from their
    threads, the transport delivers frames from its own, the scheduler runs
    the timers; each takes the device's lock."""

    def __init__(self, name, flash_dir, device_id, transport, slots=256):
        self.name = name
        self.flash = pathlib.Path(flash_dir)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.device_id = device_id
        self.transport = transport
        self.slots = slots
        self.cond = threading.Condition(threading.RLock())
        self.on = False
        self.starts = 0
        self.power_cuts = 0
        self.view = ""
        self.journal = None
        self.ev = None
        self.link = None
        self.line = None  # no serial line in fast mode
        (self.flash / "device.json").write_text(json.dumps({"device_id": device_id}))

    # -- the firmware's `dev` (orders.py and rating.py read these) --------------
    def clock(self, at):
        return (self.wall + at // 1000) & 0xFFFFFFFF if self.wall else 0

    def record(self, kind, score, reasons, invitation, at):
        try:
            s = self.journal.append(self.boot, self.event_seq + 1, kind, score, reasons, invitation,
                                    self.clock(at), at)
        except (OSError, ValueError):
            s = -1
        if s < 0:
            self.lost += 1
            return False
        self.event_seq += 1
        return True

    def has_room(self):
        return self.journal.has_room(RATING)

    def paired(self):
        return bool(self.staff_id) and self.link.key is not None

    def now(self):
        return int((time.monotonic() - self.t0) * 1000)

    # -- power ------------------------------------------------------------------
    def _settings(self, name):
        try:
            return json.loads((self.flash / (name + ".json")).read_text())
        except (OSError, ValueError):
            return None

    def start(self):
        """Power on: scan the journal file, a new boot number, the settings."""
        with self.cond:
            if self.on:
                return self
            self.t0 = time.monotonic()
            j = open_journal(str(self.flash / "journal"), self.slots)
            boot = j.max_boot
            try:
                boot = max(boot, int((self.flash / "boot").read_text()))
            except (OSError, ValueError):
                pass
            self.boot = boot + 1
            tmp = self.flash / "boot.tmp"
            tmp.write_text(str(self.boot))
            os.replace(tmp, self.flash / "boot")
            self.journal = j
            self.event_seq = 0
            self.wall = self.tz_min = 0
            self.lost = self.oom = self.gw_errors = 0
            self.heartbeat_ms = 30000
            self.dirty = True
            self.screen = _Screen
            self.buttons = Buttons()
            self.ev = Evaluator(self)
            self.link = DevLink(self)
            pair = self._settings("pair") or {}
            self.staff_id = pair.get("staff_id", "")
            self.window = pair.get("window", "")
            self.link.set_key(self._key())
            cfg = self._settings("config")
            if cfg:
                orders.configure(self, cfg, 0)
            self.on = True
            self.starts += 1
            self.link.start(self.now())
            self._after(self.now())
        return self

    def _key(self):
        with _STORE_LOCK:  # firmware/store.py reads the key file the technician's tool wrote
            store.ROOT = str(self.flash) + os.sep
            return store.key()

    @property
    def running(self):
        return self.on

    def power_cut(self):
        """A pulled plug: RAM is gone (the evaluator, the link, the clock);
        the journal file keeps what append() wrote."""
        with self.cond:
            if not self.on:
                return
            self.on = False
            self.power_cuts += 1
            self.journal.f.close()
            self.view = ""
            self.cond.notify_all()

    terminate = power_cut

    def stop(self):
        self.power_cut()

    # -- the loop, a turn at a time ---------------------------------------------
    def turn(self):
        """Called by the scheduler when due: timers. Returns ms until the
        next one, or None when off."""
        with self.cond:
            if not self.on:
                return None
            return self._after(self.now())

    def _after(self, t):
        btn = self.buttons
        if btn.update(t) and self.link.up:
            self.link.health(t)
        q = btn.queue
        if q:
            btn.queue = []
            for i in q:
                self.ev.press(5 - i, t)
        self.ev.tick(t)
        self.link.poll(t)
        self._redraw()
        t = self.now()
        w = 1000
        for d in (btn.due(t), self.ev.due(t), self.link.due(t)):
            if 0 <= d < w:
                w = d
        self.transport.schedule(self, w)
        return w

    def _redraw(self):
        v = self.ev.state
        if v != IDLE:
            v = NAMES[v]
        elif not self.has_room():
            v = "full"
        else:
            v = "idle" if self.paired() else "unpaired"
        if v != self.view:
            self.view = v
            self.cond.notify_all()

    def receive(self, payload):
        """Frames from the gateway (one MQTT payload)."""
        with self.cond:
            if not self.on:
                return  # a board that is off hears nothing
            t = self.now()
            for packet in bytes(payload).split(b"\x00"):
                if packet:
                    self.link.receive(packet, t)
            self._after(t)

    # -- buttons (SimDevice's interface) ----------------------------------------
    def _button(self, star, level):
        with self.cond:
            if not self.on:
                raise SimDeviceError("%s is not running" % self.name)
            t = self.now()
            self.buttons.set(5 - star, level, t)
            if level == 2:
                self._after(t)
            else:
                self.transport.schedule(self, 0)

    def press(self, star):
        self._button(star, 2)

    def down(self, star):
        self._button(star, 1)

    def up(self, star):
        self._button(star, 0)

    # -- screen -----------------------------------------------------------------
    def state(self):
        return self.view

    def screen_text(self):
        inv = self.showing()
        return self.view + "\n" + inv + "\n" if inv else self.view + "\n"

    def showing(self):
        """The invitation on screen, or "" (as SimDevice.showing())."""
        with self.cond:
            return self.ev.invitation if self.on and self.ev.state != IDLE else ""

    def wait_state(self, states, timeout=5.0, poll=None):
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.view in states:
                    return self.view
                left = deadline - time.monotonic()
                if left <= 0 or not self.on:
                    return ""
                self.cond.wait(left)

    def journal_depth(self):
        with self.cond:
            return len(self.journal.live) if self.on else None

