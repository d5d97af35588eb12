"""Serial ingest: every configured port, one reader thread, `selectors`.

Ports come from `[serial] ports`: explicit paths and globs, re-globbed every
`rescan_s` so a re-plugged or renamed port (a new /dev/ttyUSBn behind the same
/dev/serial/by-id/... name) is found again. Ports are keyed by the name that
found them; a second name of a device already open (a by-id link and its
/dev/ttyUSBn both matching) is skipped, so it is opened once. A port that fails (unplugged,
I/O error, EOF) is closed and re-opened with capped exponential back-off;
the others carry on. Bytes that are not frames are counted per port
(`protocol.reader.Reader` resyncs on the next 0x00), never fatal.

The thread only reads and splits: checked frames go to the router, events
to the commit thread's queue; ACKs are written by the commit thread under the
port's write lock.
"""

import glob
import logging
import os
import selectors
import threading
import time

import serial

from gateway.backoff import Backoff
from gateway.ingest import fastdecode
from gateway.ingest.router import Link
from protocol.reader import Reader

log = logging.getLogger("hcp.gateway.serial")

READ_CHUNK = 65536
MAX_OUT = 64 * 1024  # bytes waiting for a slow port; beyond it whole frames are dropped
BACKOFF_START_S = 0.1
STABLE_AFTER_S = 5.0  # a port open this long has its back-off reset


def _is_glob(pattern):
    return any(c in pattern for c in "*?[")


class Port(Link):
    physical = True

    def __init__(self, path, real, baudrate, want_write=None):
        super().__init__()
        self.want_write = want_write or (lambda port: None)
        self.outbuf = bytearray()
        self.dropped_out = 0
        self.path = path
        self.real = real
        self.name = "serial:" + path
        self.baudrate = baudrate
        self.ser = None
        self.fd = None
        self.reader = Reader()
        self.wlock = threading.Lock()
        self.failures = 0
        self.next_try = 0.0
        self.opened_at = None
        self.opens = 0
        self.write_errors = 0
        self.last_error = ""

    @property
    def is_open(self):
        return self.ser is not None

    def open(self):
        self.real = os.path.realpath(self.path)
        ser = serial.Serial(self.real, self.baudrate, timeout=0, exclusive=True)
        with self.wlock:
            self.ser = ser
            self.fd = ser.fileno()  # O_NONBLOCK (pyserial opens it so)
            self.outbuf.clear()
        self.reader = Reader()
        self.opened_at = time.monotonic()
        self.opens += 1
        # Close off any partial frame the device has from before (protocol/README.md §1).
        self.send(b"\x00")

    def close(self, why=""):
        with self.wlock:
            ser, self.ser, self.fd = self.ser, None, None
        if ser is not None:
            try:
                ser.close()
            except (OSError, serial.SerialException):
                pass
        if why:
            self.last_error = why
        dev = self.device
        if dev is not None and dev.link is self:
            dev.link = None

    def send(self, data):
        """Write a frame without ever blocking the caller (the commit thread
        sends every device's ACKs: one stalled port must not hold up the
        others). What the port does not take now waits in `outbuf` and is
        flushed by the reader loop when the port is writable; a port that
        takes nothing for MAX_OUT bytes loses whole frames, counted (the
        device resends, and the ACK comes again)."""
        with self.wlock:
            if self.fd is None:
                raise OSError("port %s is closed" % self.path)
            if self.outbuf:
                if len(self.outbuf) + len(data) > MAX_OUT:
                    self.dropped_out += 1
                    raise OSError("port %s is not taking data (%d bytes waiting)"
                                  % (self.path, len(self.outbuf)))
                self.outbuf += data
                return
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError as err:
                self.write_errors += 1
                raise OSError("write to %s failed: %s" % (self.path, err)) from err
            if n < len(data):
                self.outbuf += memoryview(data)[n:]
                self.want_write(self)

    def flush(self):
        """Write what waits in outbuf; True when it is empty."""
        with self.wlock:
            if self.fd is None:
                return True
            try:
                n = os.write(self.fd, self.outbuf)
            except BlockingIOError:
                return False
            except OSError:
                self.write_errors += 1
                self.outbuf.clear()
                return True
            del self.outbuf[:n]
            return not self.outbuf

    def status(self):
        return {"path": self.path, "real": self.real, "open": self.is_open, "opens": self.opens,
                "failures": self.failures, "last_error": self.last_error,
                "bytes": self.reader.bytes, "errors": dict(self.reader.errors),
                "write_errors": self.write_errors, "dropped_out": self.dropped_out,
                "out_waiting": len(self.outbuf),
                "device": self.device.device_id if self.device else ""}


class SerialIngest(threading.Thread):
    def __init__(self, cfg_serial, router):
        super().__init__(name="hcp-serial", daemon=True)
        self.cfg = cfg_serial
        self.router = router
        self.ports = {}  # configured path (or glob match) -> Port
        self.reopen = Backoff(BACKOFF_START_S, cfg_serial.reopen_max_s, jitter=False)  # after port.failures
        self._halt = threading.Event()
        self._rd, self._wr = os.pipe()
        os.set_blocking(self._rd, False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self._rd, selectors.EVENT_READ, None)
        self._next_scan = 0.0
        self._want_write = set()
        self._wlock = threading.Lock()

    def _port_wants_write(self, port):
        # Any thread; the selector is changed in the reader thread.
        with self._wlock:
            self._want_write.add(port)
        try:
            os.write(self._wr, b"w")
        except OSError:
            pass

    def stop(self, timeout=5.0):
        self._halt.set()
        try:
            os.write(self._wr, b"x")
        except OSError:
            pass
        if self.is_alive():
            self.join(timeout)
        for port in list(self.ports.values()):
            port.close()
        os.close(self._rd)
        os.close(self._wr)

    def status(self):
        return [p.status() for p in sorted(self.ports.values(), key=lambda p: p.path)]

    # --- the thread --------------------------------------------------------
    def run(self):
        while not self._halt.is_set():
            now = time.monotonic()
            if now >= self._next_scan:
                self._scan()
                self._next_scan = now + self.cfg.rescan_s
            wait = self._next_scan - now
            for port in list(self.ports.values()):
                if not port.is_open:
                    if now >= port.next_try:
                        self._open(port, now)
                    if not port.is_open:
                        wait = min(wait, port.next_try - now)
                elif port.failures and now - port.opened_at > STABLE_AFTER_S:
                    port.failures = 0
            with self._wlock:
                wants, self._want_write = self._want_write, set()
            for port in wants:
                if port.is_open:
                    self._watch(port, selectors.EVENT_READ | selectors.EVENT_WRITE)
            for key, mask in self.sel.select(timeout=max(0.0, min(wait, 0.5))):
                port = key.data
                if port is None:
                    try:
                        os.read(self._rd, 4096)
                    except OSError:
                        pass
                    continue
                if mask & selectors.EVENT_WRITE and port.flush():
                    self._watch(port, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    self._read(port)

    def _watch(self, port, events):
        try:
            self.sel.modify(port.fd, events, port)
        except (KeyError, ValueError, OSError):
            pass

    def _scan(self):
        seen = set()
        reals = {p.real for p in self.ports.values() if p.is_open}
        for pattern in self.cfg.ports:
            paths = sorted(glob.glob(pattern)) if _is_glob(pattern) else [pattern]
            for path in paths:
                if path in seen:
                    continue
                real = os.path.realpath(path)
                port = self.ports.get(path)
                if port is None:
                    if real in reals:  # another name of a port already open
                        continue
                    port = self.ports[path] = Port(path, real, self.cfg.baudrate,
                                                   self._port_wants_write)
                    reals.add(real)
                seen.add(path)
        # Ports that left the globs and are closed are forgotten.
        for path, port in list(self.ports.items()):
            if path not in seen and not port.is_open:
                del self.ports[path]

    def _open(self, port, now):
        try:
            port.open()
        except (OSError, serial.SerialException, ValueError) as err:
            port.close(str(err))
            port.failures += 1
            delay = self.reopen.delay(port.failures - 1)
            port.next_try = now + delay
            if port.failures == 1 or port.failures % 10 == 0:
                log.warning("cannot open %s (%s); retrying in %.1f s", port.path, err, delay)
            return
        self.sel.register(port.fd, selectors.EVENT_READ, port)
        log.info("opened %s", port.path)

    def _fail(self, port, why):
        try:
            self.sel.unregister(port.fd)
        except (KeyError, ValueError, OSError):
            pass
        port.close(why)
        port.failures += 1
        port.next_try = time.monotonic() + self.reopen.delay(port.failures - 1)
        log.warning("port %s closed: %s", port.path, why)

    def _read(self, port):
        try:
            data = os.read(port.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            self._fail(port, str(err))
            return
        if not data:
            self._fail(port, "end of file")
            return
        packets = port.reader.packets(data)
        if packets:  # Router.packets, with the fast decoder for events (gateway/ingest/fastdecode.py)
            fastdecode.route(self.router, port, packets, port.reader)
