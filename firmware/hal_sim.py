# The `sim` board: the firmware under the MicroPython unix port. A board is
# a module (one per board kind) with the same few names:
#
#   init(settings, opts)  open the devices; sets the fields below
#   name, width, height, debounce_ms, stuck_ms, slots, flash
#   make_id()             a device id for the first boot
#   read() / write(b)     the UART: bytes read into `rx` (0: none) / send
#   wait(ms)              sleep until input arrives or ms pass
#   scan(buttons, now)    feed button levels into firmware.buttons
#   show(buf, view, inv)  put the framebuffer on the panel (inv: the open
#                         invitation's id, or ""; the sim board writes it)
#
# Here: the UART is a pty (the simulator or test holds the master side);
# buttons are lines on stdin: `press N` (a clean press of the N-star
# button), `down N` / `up N` (raw levels, debounced like real contacts);
# the screen goes to DIR/screen.pbm (P4) and DIR/screen.txt (the view's
# name), both replaced atomically (temp + rename) after every change; the
# flash is the directory DIR.
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

name = "sim"
ops = []  # button commands waiting for scan(); at most 16
line = b""
hup = 0  # when the pty's master went away (0: it is there)


def init(settings, opts):
    global u, poll, more, width, height, debounce_ms, stuck_ms, slots, flash
    flash = opts.get("flash", ".")
    d = settings.get("display") or {}
    width = d.get("width", 128)
    height = d.get("height", 64)
    d = settings.get("buttons") or {}
    debounce_ms = d.get("debounce_ms", 30)
    stuck_ms = d.get("stuck_ms", 5000)
    slots = (settings.get("storage") or {}).get("journal_slots", 256)
    u = open(opts["uart"], "r+b")
    termios.setraw(u.fileno())
    # VMIN = VTIME = 0 (cc[6], cc[5] on Linux): a read returns what is
    # there, at once. MicroPython's stream read loops until its buffer is
    # full or a read returns 0, so with VMIN = 1 it would block.
    a = termios.tcgetattr(u.fileno())
    a[6][6] = a[6][5] = 0
    termios.tcsetattr(u.fileno(), termios.TCSANOW, a)
    poll = select.poll()
    poll.register(u, select.POLLIN)
    poll.register(sys.stdin, select.POLLIN)
    more = select.poll()  # is there more on stdin?
    more.register(sys.stdin, select.POLLIN)


def make_id():
    b = os.urandom(4)
    return "SIM-%02X%02X%02X%02X" % (b[0], b[1], b[2], b[3])


rx = bytearray(128)  # read() fills it: no allocation per read


def read():
    """Bytes waiting on the line, read into `rx`: how many (0: none)."""
    try:
        return u.readinto(rx) or 0
    except OSError:
        return 0


def write(data):
    u.write(data)


def wait(ms):
    global hup, line
    if hup:
        # The master side hung up: poll would say so at once, forever. Look
        # again every 200 ms; the buttons are served meanwhile.
        if time.ticks_diff(time.ticks_ms(), hup) >= 200:
            hup = 0
            poll.register(u, select.POLLIN)
        ms = min(ms, 200)
    for obj, ev in poll.poll(ms):
        if obj is u:
            if ev & (select.POLLHUP | select.POLLERR):
                poll.unregister(u)
                hup = time.ticks_ms() or 1
            continue
        # stdin, a byte at a time while poll says there is more: never
        # blocks on half a line. EOF is ignored: the device keeps running.
        while True:
            c = sys.stdin.buffer.read(1)
            if not c:
                poll.unregister(sys.stdin)
                break
            if c == b"\n":
                w = line.split()
                line = b""
                try:  # N stars is button 5 - N from the left
                    n = int(w[1])
                    if 0 < n < 6 and len(ops) < 16:
                        ops.append(((b"press", b"down", b"up").index(w[0]), 5 - n))
                except (ValueError, IndexError):
                    pass  # not a command: ignored
            elif len(line) < 32:
                line += c
            if not more.poll(0):
                break


def scan(buttons, now):
    for op, i in ops:
        buttons.set(i, 2 if op == 0 else 2 - op, now)
    ops.clear()


def show(buf, view, invitation=""):
    # Inverted in place for the file and back: no second 1 KB buffer. No
    # flush(): it would fsync, and a picture needs atomicity, not
    # durability. The text twin goes last: whoever sees the new view name
    # finds the new picture too.
    p = flash + "/screen"
    for i in range(len(buf)):
        buf[i] ^= 0xFF
    f = open(p + ".pbm.tmp", "wb")
    f.write(b"P4\n%d %d\n" % (width, height))
    f.write(buf)
    f.close()
    for i in range(len(buf)):
        buf[i] ^= 0xFF
    os.rename(p + ".pbm.tmp", p + ".pbm")
    # Line 2: the invitation on screen, so the simulator's citizen rates
    # the prompt of the clerk's invitation, not a late one of an earlier.
    f = open(p + ".txt.tmp", "w")
    f.write(view + "\n" + invitation + "\n" if invitation else view + "\n")
    f.close()
    os.rename(p + ".txt.tmp", p + ".txt")
