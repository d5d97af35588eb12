# The `sim` board: the firmware under the MicroPython unix port.
#
#   uart     a pty path (the simulator or test holds the master side)
#   buttons  lines on stdin: `press N` (a clean press of the N-star button),
#            `down N` / `up N` (raw levels, debounced like real contacts)
#   screen   DIR/screen.pbm (P4) and DIR/screen.txt (the view's name), both
#            replaced atomically (temp + rename) after every change
#   flash    the directory DIR
#
# screen.pbm shows the panel as a person sees it: PBM's 1 is black, so lit
# pixels (1 in the framebuffer) are written as 0 (white). A QR code drawn
# dark-on-lit comes out black on white, as a camera would see it.
#
# Settings default to the [sim] table of boards.toml; DIR/board.json (the
# same table as JSON) overrides them, e.g. a small journal for a test.

import os
import select
import sys
import termios
import time
from binascii import hexlify

from firmware import store

_OPS = (b"press", b"down", b"up")
_N = (b"1", b"2", b"3", b"4", b"5")


def _get(settings, table, key, default):
    t = settings.get(table)
    return t.get(key, default) if isinstance(t, dict) else default


class Board:
    name = "sim"

    def __init__(self, uart, settings):
        self.width = _get(settings, "display", "width", 128)
        self.height = _get(settings, "display", "height", 64)
        self.debounce_ms = _get(settings, "buttons", "debounce_ms", 30)
        self.stuck_ms = _get(settings, "buttons", "stuck_ms", 5000)
        self.slots = _get(settings, "storage", "journal_slots", 256)
        self.u = u = open(uart, "r+b")
        termios.setraw(u.fileno())
        # VMIN = VTIME = 0 (cc[6], cc[5] on Linux): a read returns what is
        # there, at once. MicroPython's stream read loops until its buffer
        # is full or a read returns 0, so with VMIN = 1 it would block.
        a = termios.tcgetattr(u.fileno())
        a[6][6] = a[6][5] = 0
        termios.tcsetattr(u.fileno(), termios.TCSANOW, a)
        self.poll = select.poll()
        self.poll.register(u, select.POLLIN)
        self.poll.register(sys.stdin, select.POLLIN)
        self.more = select.poll()  # is there more on stdin?
        self.more.register(sys.stdin, select.POLLIN)
        self.line = b""
        self.ops = []
        self.hup = 0  # when the pty's master went away (0: it is there)
        self.head = b"P4\n%d %d\n" % (self.width, self.height)

    def make_id(self):
        return "SIM-" + hexlify(os.urandom(4)).decode().upper()

    def read(self):
        try:
            return self.u.read(256)
        except OSError:
            return None

    def write(self, data):
        self.u.write(data)

    def wait(self, ms):
        if self.hup:
            # The master side hung up: poll would say so at once, forever.
            # Look again every 200 ms; the buttons are served meanwhile.
            if time.ticks_diff(time.ticks_ms(), self.hup) >= 200:
                self.hup = 0
                self.poll.register(self.u, select.POLLIN)
            ms = min(ms, 200)
        for obj, ev in self.poll.poll(ms):
            if obj is self.u:
                if ev & (select.POLLHUP | select.POLLERR):
                    self.poll.unregister(self.u)
                    self.hup = time.ticks_ms() or 1
                continue
            # stdin, a byte at a time while poll says there is more: never
            # blocks on half a line.
            while True:
                c = sys.stdin.buffer.read(1)
                if not c:  # EOF is ignored: the device keeps running
                    self.poll.unregister(sys.stdin)
                    break
                if c == b"\n":
                    self._command(self.line.split())
                    self.line = b""
                elif len(self.line) < 32:
                    self.line += c
                if not self.more.poll(0):
                    break

    def _command(self, words):
        # N stars is button 5 - N from the left. Anything else is ignored,
        # and at most 16 commands wait for the loop.
        if len(words) == 2 and words[0] in _OPS and words[1] in _N and len(self.ops) < 16:
            self.ops.append((_OPS.index(words[0]), 5 - int(words[1])))

    def scan(self, buttons, now):
        for op, i in self.ops:
            if op == 0:
                buttons.pulse(i)
            else:
                buttons.set(i, op == 1, now)
        self.ops = []

    def show(self, buf, view):
        # Inverted in place for the file and back: no second 1 KB buffer.
        # No flush(): it would fsync, and a picture needs atomicity, not
        # durability. The text twin goes last: whoever sees the new view
        # name finds the new picture too.
        p = store.ROOT + "screen"
        for i in range(len(buf)):
            buf[i] ^= 0xFF
        f = open(p + ".pbm.tmp", "wb")
        f.write(self.head)
        f.write(buf)
        f.close()
        for i in range(len(buf)):
            buf[i] ^= 0xFF
        os.rename(p + ".pbm.tmp", p + ".pbm")
        f = open(p + ".txt.tmp", "w")
        f.write(view + "\n")
        f.close()
        os.rename(p + ".txt.tmp", p + ".txt")

    def ready(self, dev):
        print("hcp-fw %s ready: device %s boot %d board sim" % (dev.fw, dev.device_id, dev.boot))
