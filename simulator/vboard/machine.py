# The `machine` module of a virtual ESP32 or RP2040 board: the MicroPython
# unix port made to look like the real ports where the firmware can tell.
# Never flashed to a board (a board has its own `machine` in ROM); the
# simulator puts this directory first on the VM's path (MICROPYPATH) and
# simulator/board.py is the other side of every wire:
#
#   Pin    levels driven by the simulator: a waveform per change (contact
#          bounce: a few ms of chatter on press and release), a held level
#          (a stuck key); unwired inputs read their pull.
#   UART   on a pty. The rx side is a ring of `rxbuf` bytes, as the real
#          ports keep, filled at the baud rate (the pty holds what is still
#          on the wire): bytes that find it full are dropped (counted in
#          `UART.dropped`, which only the virtual board has); any(), read(),
#          readinto() and write() as on the ports (read* return None when
#          nothing is there, timeout 0).
#   I2C    the bus to the panel: every transaction the panel ACKs goes to the
#          simulator's SSD1306/SSD1309 model (simulator/panel.py), which keeps
#          its GDDRAM and renders screen.pbm. A wrong address or a missing
#          panel is a NAK: OSError ENODEV on the ESP32, EIO on the RP2040; a
#          bus held low (connector half out) is ETIMEDOUT on both.
#   unique_id() (6 bytes, the ESP32's MAC; 8 on the RP2040), reset() (the
#          simulator starts the VM again), WDT (the simulator resets a board
#          not fed in time), RTC, freq(), idle(), lightsleep(), deepsleep().
#
# The wiring comes from the file named by $HCP_VBOARD, read and opened at
# import (before _boot.py mounts the board's flash at "/", after which host
# paths are out of reach): lines "key value" — board, id, hw (the pty of
# the simulator's side channel), uart<N> (the pty of UART N), panel (its
# I2C address), freq.
#
# Side channel, one pty. Simulator -> board: records of 6 bytes, pin,
# level, when (u32 LE, a ticks_ms() value: the unix port's ticks are the
# host's monotonic clock in ms, so the simulator's clock; an edge read late
# still takes effect in its time); pin 255 is the panel (level 1 ACKs, 0
# NAKs, 2 holds the bus). Board ->
# simulator: b"I" addr len(2, LE) data (one I2C write the panel ACKed),
# b"W" timeout_ms(4, LE) (a WDT started), b"F" (fed), b"R" (reset()),
# b"D" n(2, LE) (n bytes found the UART ring full and were dropped).
#
# On a board `machine` is in ROM; here it is bytecode in the VM's heap, so
# it is kept small (what the firmware and the tools use) and the rest (WDT,
# RTC, freq, sleeps, reset causes) is in vbextra.py, loaded on first use.

import array
import errno
import os
import select
import struct
import sys
import termios
import time

_wire = {}
with open(os.getenv("HCP_VBOARD") or "wiring") as _f:
    for _l in _f:
        _k, _, _v = _l.strip().partition(" ")
        if _k:
            _wire[_k] = _v
_board = _wire.get("board", "esp32")
_NAK = errno.ENODEV if _board == "esp32" else errno.EIO


def _raw(path, flush):
    # A pty, raw, VMIN = VTIME = 0: a read returns what is there, at once
    # (MicroPython's stream read loops until its buffer is full or a read
    # returns 0). setraw() also drops what waits (a UART that starts hears
    # nothing from before); the side channel is raw already and keeps what
    # the simulator said before the VM started (the panel's state, keys held).
    f = open(path, "r+b")
    if flush:
        termios.setraw(f.fileno())
    a = termios.tcgetattr(f.fileno())
    a[6][6] = a[6][5] = 0
    termios.tcsetattr(f.fileno(), termios.TCSANOW, a)
    return f


_hw = _raw(_wire["hw"], False)
_hwp = select.poll()
_hwp.register(_hw, select.POLLIN)
_uarts = {}
for _k in _wire:
    if _k.startswith("uart"):
        _uarts[int(_k[4:])] = _raw(_wire[_k], True)
_k = _v = _l = _f = None
del _raw

_panel = 1  # 1 ACKs, 0 NAKs, 2 holds the bus (timeout)
_addr = int(_wire.get("panel", "60"))
_lv = {}  # pin -> level driven by the simulator, or its pull
# Levels waiting for their time, in the order they came: preallocated, so
# the emulator never asks the firmware's heap for a block while it runs.
_N = 128
_due = array.array("i", bytes(4 * _N))
_pin = bytearray(_N)
_val = bytearray(_N)
_n = 0
_rb = bytearray(64)
_r6 = memoryview(_rb)[:6]
_t = None


def _sync():
    """Take what the simulator sent (at most once a millisecond), then
    apply the pin levels that are due."""
    global _t, _panel, _n
    t = time.ticks_ms()
    if t != _t:
        _t = t
        while _hwp.poll(0):
            k = _hw.readinto(_r6) or 0
            if not k:
                break
            while k < 6:  # the rest of a record is written with it
                k += _hw.readinto(_r6[k:]) or 0
            if _rb[0] == 255:
                _panel = _rb[1]
            elif _n < _N:
                _due[_n] = _rb[2] | _rb[3] << 8 | _rb[4] << 16 | _rb[5] << 24
                _pin[_n] = _rb[0]
                _val[_n] = _rb[1]
                _n += 1
    i = j = 0
    while i < _n:
        if time.ticks_diff(_due[i], t) <= 0:
            _lv[_pin[i]] = _val[i]
        else:  # kept, moved down over the ones applied
            _due[j] = _due[i]
            _pin[j] = _pin[i]
            _val[j] = _val[i]
            j += 1
        i += 1
    _n = j


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        if pull > 0 and id not in _lv:
            _lv[id] = 1 if pull == 2 else 0
        if value is not None:
            _lv[id] = value

    def value(self, v=None):
        if v is None:
            _sync()
            return _lv.get(self.id, 0)
        _lv[self.id] = 1 if v else 0  # an output drives its own pin

    __call__ = value


class UART:
    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, tx=None, rx=None,
                 rxbuf=256, timeout=0, **kw):
        if id not in _uarts:
            raise ValueError("UART(%d) doesn't exist" % id)
        self._f = _uarts[id]
        self._p = select.poll()
        self._p.register(self._f, select.POLLIN)
        self._ring = bytearray(rxbuf)
        self._mv = memoryview(self._ring)
        self._n = 0
        self._bpms = max(baudrate // 10000, 1)  # bytes a millisecond of line carries
        self._t = time.ticks_ms()
        self.dropped = 0  # bytes that found the ring full (the virtual board's count)

    def _fill(self):
        # The pty holds what is still on the wire: the ring takes what the
        # line carried since the last look, at the baud rate, and what does
        # not fit is dropped, as the rx interrupt finds the ring full.
        t = time.ticks_ms()
        budget = time.ticks_diff(t, self._t) * self._bpms
        if budget <= 0:
            return
        self._t = t
        while budget > 0 and self._p.poll(0):
            room = len(self._ring) - self._n
            if room:
                k = self._f.readinto(self._mv[self._n:self._n + min(room, budget, 256)]) or 0
                self._n += k
            else:
                k = self._f.readinto(memoryview(_rb)[:min(64, budget)]) or 0
                if k:
                    self.dropped += k
                    _hw.write(b"D" + struct.pack("<H", k))  # for the simulator's count
            if not k:
                break
            budget -= k

    def any(self):
        self._fill()
        return self._n

    def readinto(self, buf, nbytes=-1):
        self._fill()
        k = min(self._n, len(buf) if nbytes < 0 else nbytes)
        if not k:
            return None
        buf[:k] = self._mv[:k]
        self._mv[: self._n - k] = self._mv[k:self._n]
        self._n -= k
        return k

    def read(self, nbytes=-1):
        self._fill()
        k = self._n if nbytes < 0 else min(self._n, nbytes)
        if not k:
            return None
        b = bytes(self._mv[:k])
        self._mv[: self._n - k] = self._mv[k:self._n]
        self._n -= k
        return b

    def write(self, buf):
        return self._f.write(buf)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        pass

    def scan(self):
        _sync()
        return [_addr] if _panel == 1 else []

    def writeto(self, addr, buf, stop=True):
        return self.writevto(addr, (buf,), stop)

    def writevto(self, addr, vector, stop=True):
        _sync()
        if _panel == 2:
            raise OSError(errno.ETIMEDOUT)
        if not _panel or addr != _addr:
            raise OSError(_NAK)
        n = 0
        for b in vector:
            n += len(b)
        _hw.write(b"I" + struct.pack("<BH", addr, n))
        for b in vector:
            _hw.write(b)
        return n


def unique_id():
    return bytes.fromhex(_wire["id"])


def reset():
    _hw.write(b"R")
    sys.exit(0)  # the simulator starts the VM again, as a board boots


def __getattr__(name):
    if name[0] == "_":  # __path__ and the like, asked by every import
        raise AttributeError(name)
    # The board's flash is "/" now: the emulator's directory ("rom" in the
    # wiring) is mounted just long enough to load the rest from it.
    if "vbextra" not in sys.modules:
        os.mount(os.VfsPosix(_wire["rom"]), "/.rom")
        sys.path.append("/.rom")
        try:
            import vbextra  # noqa: F401
        finally:
            sys.path.remove("/.rom")
            os.umount("/.rom")
    return getattr(sys.modules["vbextra"], name)
