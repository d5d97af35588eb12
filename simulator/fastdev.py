"""A fast evaluator for `hcp sim fleet --fast`: the firmware itself, in
process, a thousand and more to one machine.

What runs is the firmware's own code, a copy of its modules per device
(simulator/fastvm.py): firmware/boot.py powers it on (journal scan, boot
number, key, pairing, config), app.py's run() and turn() are its loop, and
link.py, orders.py, rating.py, journal.py (on a real file), buttons.py,
store.py (the settings files in the device's directory), protocol/rx.py and
protocol/tx.py do what they do on a board. There is no second link here:
the hello, the window of 8, the retransmit backoff, the tags and the replay
guard are firmware/link.py's.

What is not the firmware's is the board, this module's `Board` in place of
firmware/hal_sim.py (the same names: init, make_id, rx, read, write, wait,
scan, show), and what the MicroPython VM would provide:

- the line: what the firmware writes in a turn goes out as one MQTT payload
  when the turn ends (in hal.wait), through the transport
  (simulator/fastlink.py); payloads from the gateway are read 128 bytes at a
  time as from the UART (hal.read). At most INBOX bytes wait: a payload that
  finds no room is dropped and counted (`Board.overruns`, which health
  reports as `rx_overruns`, as hal_machine.py counts a full UART ring): the
  gateway resends commands until they are done.
- the clock: MicroPython's time.ticks_ms()/ticks_diff() over the monotonic
  clock, or over a test's `VirtualClock`.
- buttons: `press N`, `down N`, `up N`, queued (at most 16) and fed to
  firmware/buttons.py by hal.scan(), as the sim board's stdin lines are.
- the screen: the view's name and the invitation shown (hal.show). Nothing
  is drawn: firmware/screen.py draws with MicroPython's framebuf; its
  stand-in here keeps the panel size that orders.py checks bitmaps against.
- the heap: gc.collect() does nothing and gc.mem_free() is 0 (health's
  `free_heap`): a fast device has no 64 KB heap to report. The VM reports
  the real figure (`hcp bench firmware`).

The loop: at power-on the firmware's run() (link start, first draw, first
turn), then app.turn() each time one is due: when the time the firmware
asked hal.wait() to sleep has passed (the transport's scheduler), when a
payload arrives, when a button is pressed. hal.wait() ends a turn by raising
`Asleep` (run() loops forever on a board).

The interface is SimDevice's, for the fleet's actors: press / down / up,
state / wait_state / showing, starts, running, power_cut / start / stop. A
power cut drops the device's modules (its RAM) and closes its files; the
next start() builds them afresh and boots from the flash directory.
"""

import json
import os
import pathlib
import threading
import time

from simulator import fastvm
from simulator.device import DeviceDown

INBOX = 16384  # bytes from the gateway waiting to be read: a UART's buffer, generously
FLUSH_AT = 4096  # a payload goes out before it grows past this (the gateway takes 8 KB)
OPS = 16  # button commands waiting for scan(), as hal_sim
TICKS_PERIOD = 1 << 30  # MicroPython's ticks_ms() wraps here (the unix port's period)


class Asleep(Exception):
    """Raised by hal.wait(): the turn is over."""


class Ticks:
    """MicroPython's `time` as the firmware uses it, over a millisecond source."""

    __slots__ = ("ms",)

    def __init__(self, ms):
        self.ms = ms

    def ticks_ms(self):
        return int(self.ms()) & (TICKS_PERIOD - 1)

    @staticmethod
    def ticks_diff(a, b):
        half = TICKS_PERIOD // 2
        return ((a - b + half) & (TICKS_PERIOD - 1)) - half

    @staticmethod
    def ticks_add(a, d):
        return (a + d) & (TICKS_PERIOD - 1)


def monotonic_ms():
    return time.monotonic_ns() // 1000000


class VirtualClock:
    """A clock in ms that moves only when told (tests)."""

    def __init__(self, start=0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now += ms


class Heap:
    """MicroPython's `gc` as the firmware uses it: no 64 KB heap here."""

    @staticmethod
    def collect():
        pass

    @staticmethod
    def mem_free():
        return 0


HEAP = Heap()
REAL_TIME = Ticks(monotonic_ms)


class Screen:
    """firmware/screen.py's place: the panel's size and buffer, no drawing."""

    __slots__ = ("w", "h", "buf")

    def __init__(self):
        self.w = self.h = 0
        self.buf = None

    def init(self, width, height, frame):
        self.w = width
        self.h = height
        self.buf = frame

    def draw(self, view, dev):
        pass


class Board:
    """The fast device's HAL: firmware/hal_sim.py's interface."""

    def __init__(self, dev, name):
        self.dev = dev
        self.name = name
        self.rx = bytearray(128)  # read() fills it
        self.inbox = bytearray()  # from the gateway, not read yet (from `pos`)
        self.pos = 0
        self.out = bytearray()  # written in this turn
        self.ops = []  # button commands for scan()
        self.sleep = 0  # what the last turn asked wait() for
        self.overruns = 0  # payloads from the gateway that found the inbox full (health: rx_overruns)
        self.ops_dropped = 0  # button commands beyond OPS

    # -- the HAL -----------------------------------------------------------------
    def init(self, settings, opts):
        self.flash = opts.get("flash", ".")
        d = settings.get("display") or {}
        self.width = d.get("width", 128)
        self.height = d.get("height", 64)
        d = settings.get("buttons") or {}
        self.debounce_ms = d.get("debounce_ms", 30)
        self.stuck_ms = d.get("stuck_ms", 5000)
        self.slots = (settings.get("storage") or {}).get("journal_slots", self.dev.slots)

    @staticmethod
    def make_id():
        b = os.urandom(4)
        return "SIM-%02X%02X%02X%02X" % (b[0], b[1], b[2], b[3])

    def read(self):
        n = min(len(self.inbox) - self.pos, len(self.rx))
        if n <= 0:
            return 0
        self.rx[:n] = self.inbox[self.pos:self.pos + n]
        self.pos += n
        if self.pos == len(self.inbox):
            self.inbox.clear()
            self.pos = 0
        return n

    def write(self, data):
        self.out += data  # a copy: tx.frame() is a view of protocol.tx's buffer
        if len(self.out) >= FLUSH_AT:
            self.flush()

    def wait(self, ms):
        self.sleep = ms
        self.flush()
        raise Asleep

    def scan(self, buttons, now):
        for op, i in self.ops:
            buttons.set(i, 2 if op == 0 else 2 - op, now)
        self.ops.clear()

    def show(self, buf, view, invitation=""):
        self.dev.shown(view, invitation)

    # -- the device's side ---------------------------------------------------------
    def flush(self):
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            self.dev.transport.publish(self.dev, data)

    def hear(self, payload):
        if len(payload) > INBOX - (len(self.inbox) - self.pos):
            self.overruns += 1
            return
        if self.pos:
            del self.inbox[:self.pos]
            self.pos = 0
        self.inbox += payload

    def pending(self):
        return len(self.inbox) > self.pos


class FastDevice:
    """One evaluator, in process. Thread-safe: actors press from their
    threads, the transport delivers payloads from its own, the scheduler runs
    the timers; each takes the device's lock for a turn of the firmware."""

    def __init__(self, name, flash_dir, device_id, transport, slots=256, board="sim-fast",
                 clock=None):
        self.name = name
        self.flash = pathlib.Path(flash_dir)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.device_id = device_id
        self.transport = transport
        self.slots = slots  # the journal's, unless the flash's board.json says otherwise
        self.board = board  # the name hello carries
        self.ticks = Ticks(clock) if clock is not None else REAL_TIME
        self.cond = threading.Condition(threading.RLock())
        self.on = False
        self.starts = 0
        self.power_cuts = 0
        self.crashes = 0
        self.view = ""
        self.invitation = ""
        self.ram = None  # simulator.fastvm.Ram while powered
        self.app = None  # the device's firmware/app.py
        self.hal = None
        self.line = None  # no serial line in fast mode
        if device_id:
            (self.flash / "device.json").write_text(json.dumps({"device_id": device_id}))

    # -- power ----------------------------------------------------------------------
    def start(self):
        """Power on: the firmware's boot in fresh modules, then its run()."""
        with self.cond:
            if self.on:
                return self
            self.hal = Board(self, self.board)
            ram = fastvm.Ram({"firmware.hal_sim": self.hal, "firmware.screen": Screen(),
                              "time": self.ticks, "gc": HEAP})
            # What main.py does: the protocol first, boot, boot-only code dropped.
            ram.load("protocol.rx")
            ram.load("protocol.tx")
            ram.load("firmware")
            app = ram.load("firmware.boot").start(["--flash", str(self.flash), "--board", "sim"])
            ram.drop("firmware.boot")
            ram.drop("firmware.recover")
            self.ram, self.app = ram, app
            self.on = True
            self.starts += 1
            self._run(app.run)
        return self

    @property
    def running(self):
        return self.on

    @property
    def link(self):
        """The device's firmware/link.py (None while off)."""
        return self.app.link if self.app is not None else None

    def power_cut(self):
        """A pulled plug: RAM is gone (every module of the device, what was
        not sent yet); the files keep what was written."""
        with self.cond:
            if not self.on:
                return
            self._off()
            self.power_cuts += 1

    def _off(self):
        self.on = False
        try:
            self.app.journal.f.close()
        except (AttributeError, OSError):
            pass
        self.ram = self.app = None
        self.view = self.invitation = ""
        self.cond.notify_all()

    terminate = power_cut

    def stop(self):
        self.power_cut()

    # -- the loop ---------------------------------------------------------------------
    def _run(self, fn, *args):
        try:
            fn(*args)
        except Asleep:
            pass
        except BaseException:
            # A bug in the firmware ends the device as it would end the VM.
            self.crashes += 1
            self._off()
            raise
        w = 0 if self.hal.pending() else self.hal.sleep
        self.transport.schedule(self, w)
        return w

    def turn(self):
        """A turn of the firmware's loop (the scheduler calls it when due).
        Returns ms until the next one is due, or None when off."""
        with self.cond:
            if not self.on:
                return None
            return self._run(self.app.turn, self.app.buttons)

    def receive(self, payload):
        """Frames from the gateway (one MQTT payload): the device wakes."""
        with self.cond:
            if not self.on:
                return  # a board that is off hears nothing
            self.hal.hear(payload)
            self._run(self.app.turn, self.app.buttons)

    def shown(self, view, invitation):
        # hal.show(), from inside a turn (the lock is held).
        self.view = view
        self.invitation = invitation
        self.cond.notify_all()

    # -- buttons (SimDevice's interface) --------------------------------------------
    def _button(self, star, op):
        with self.cond:
            if not self.on:
                raise DeviceDown("%s is not running" % self.name)
            if len(self.hal.ops) < OPS:
                self.hal.ops.append((op, 5 - star))
            else:
                self.hal.ops_dropped += 1
            self._run(self.app.turn, self.app.buttons)

    def press(self, star):
        self._button(star, 0)

    def down(self, star):
        self._button(star, 1)

    def up(self, star):
        self._button(star, 2)

    # -- screen ---------------------------------------------------------------------
    def state(self):
        return self.view

    def screen_text(self):
        inv = self.showing()
        return self.view + "\n" + inv + "\n" if inv else self.view + "\n"

    def showing(self):
        """The invitation on screen, or "" (as SimDevice.showing())."""
        with self.cond:
            return self.invitation if self.on else ""

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
            return len(self.app.journal.live) if self.on else None

    def output(self):
        """The device's console (the last lines it printed)."""
        ram = self.ram
        return ram.output() if ram is not None else ""
