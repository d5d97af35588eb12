"""Serial cables for simulated evaluators: each a pair of ptys joined by a
relay that can add line noise.

The firmware opens `line.device_path`, the gateway opens `line.gateway_path`
(as it would /dev/ttyUSB0); one relay thread copies bytes between the two
pty masters of every line with a selector. With noise on, each byte is, with
probability `rate`, bit-flipped, dropped or duplicated (equal shares) — the
`line-noise` fault. Every change is counted.

Both slave ends are kept open by the relay too: a pty master reads EIO while
no process holds its slave, and the raw mode set here (before any byte is
written, see docs/design.md §7) belongs to the pty, not to whoever opens it later.
Bytes that cannot be delivered (the device process is dead and its input
queue is full) are dropped and counted, like a UART talking to a board with
no power.
"""

import errno
import os
import random
import selectors
import termios
import threading
import tty

_CHUNK = 4096


class Line:
    """One cable. Counters are plain ints, read by the simulator's report."""

    def __init__(self, name, rate=0.0, seed=None):
        self.name = name
        self.rate = rate
        self._rng = random.Random(seed)
        self._dev_master, self._dev_slave = os.openpty()
        self._gw_master, self._gw_slave = os.openpty()
        for fd in (self._dev_slave, self._gw_slave):
            tty.setraw(fd)
        for fd in (self._dev_master, self._gw_master):
            os.set_blocking(fd, False)
        self.device_path = os.ttyname(self._dev_slave)
        self.gateway_path = os.ttyname(self._gw_slave)
        self.up_bytes = 0  # device -> gateway
        self.down_bytes = 0
        self.flipped = 0
        self.dropped = 0
        self.duplicated = 0
        self.undeliverable = 0

    @property
    def noise_events(self):
        return self.flipped + self.dropped + self.duplicated

    def flush_device_input(self):
        """Discard what waits in the device's receive queue: call before a
        device process restarts, since a board that was off heard nothing."""
        termios.tcflush(self._dev_slave, termios.TCIFLUSH)

    def _mangle(self, data):
        rate = self.rate
        if rate <= 0.0:
            return data
        rng = self._rng
        out = bytearray()
        for b in data:
            if rng.random() >= rate:
                out.append(b)
                continue
            what = rng.randrange(3)
            if what == 0:
                out.append(b ^ (1 << rng.randrange(8)))
                self.flipped += 1
            elif what == 1:
                self.dropped += 1
            else:
                out.append(b)
                out.append(b)
                self.duplicated += 1
        return bytes(out)

    def _write(self, fd, data):
        try:
            n = os.write(fd, data)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EIO):
                n = 0
            else:
                raise
        self.undeliverable += len(data) - n

    def close(self):
        for fd in (self._dev_master, self._dev_slave, self._gw_master, self._gw_slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Relay:
    """Moves bytes for many lines in one thread."""

    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wire-relay", daemon=True)
        self.lines = []

    def start(self):
        self._thread.start()
        return self

    def add(self, line):
        with self._lock:
            self.lines.append(line)
            self._sel.register(line._dev_master, selectors.EVENT_READ, (line, True))
            self._sel.register(line._gw_master, selectors.EVENT_READ, (line, False))
        os.write(self._wake_w, b"x")
        return line

    def _run(self):
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.5):
                if key.data is None:
                    try:
                        os.read(self._wake_r, 512)
                    except BlockingIOError:
                        pass
                    continue
                line, from_device = key.data
                try:
                    data = os.read(key.fd, _CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    continue  # EIO: nobody on the other side right now
                if not data:
                    continue
                if from_device:
                    line.up_bytes += len(data)
                    line._write(line._gw_master, line._mangle(data))
                else:
                    line.down_bytes += len(data)
                    line._write(line._dev_master, line._mangle(data))

    def stop(self):
        self._stop = True
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            for line in self.lines:
                line.close()
            self.lines = []
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
