"""The simulator's serial cables: real ptys, opened with pyserial the way the
gateway and the device open theirs."""

import time

import serial

from protocol import messages
from protocol.examples import EXAMPLES
from protocol.reader import Reader
from simulator.wire import Line, Relay


def _read_until(port, n, timeout=5.0):
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got.extend(port.read(n - len(got)))
    return bytes(got)


def test_clean_line_carries_bytes_both_ways():
    relay = Relay().start()
    try:
        line = relay.add(Line("d1"))
        dev = serial.Serial(line.device_path, 115200, timeout=0.1)
        gw = serial.Serial(line.gateway_path, 115200, timeout=0.1)
        up = b"".join(messages.encode(e) for e in EXAMPLES)
        dev.write(up)
        assert _read_until(gw, len(up)) == up
        gw.write(b"\x00down\x00")
        assert _read_until(dev, 6) == b"\x00down\x00"
        assert line.up_bytes == len(up) and line.noise_events == 0
    finally:
        relay.stop()


def test_noisy_line_mangles_and_the_reader_copes():
    relay = Relay().start()
    try:
        line = relay.add(Line("d2", rate=0.01, seed=7))
        dev = serial.Serial(line.device_path, 115200, timeout=0.1)
        gw = serial.Serial(line.gateway_path, 115200, timeout=0.1)
        frames = [messages.encode(EXAMPLES[i % len(EXAMPLES)]) for i in range(200)]
        for f in frames:
            dev.write(f)
        sent = sum(len(f) for f in frames)
        time.sleep(0.3)
        got = bytearray()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = gw.read(4096)
            if not chunk and line.up_bytes >= sent:
                break
            got.extend(chunk)
        assert line.noise_events > 0
        r = Reader()
        ok = r.feed(bytes(got) + b"\x00")
        # Most frames survive 1% noise; every mangled one is counted, none crashes.
        assert 0 < len(ok) < 200 and r.bad > 0
        assert len(ok) + r.bad >= 150
    finally:
        relay.stop()


def test_undeliverable_bytes_are_counted_not_blocking():
    relay = Relay().start()
    try:
        line = relay.add(Line("d3"))
        gw = serial.Serial(line.gateway_path, 115200, timeout=0.1)
        blob = b"\x01" * 65536  # nobody reads the device side: its queue fills
        gw.write(blob)
        deadline = time.monotonic() + 5
        while line.down_bytes < len(blob) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert line.down_bytes == len(blob)
        assert line.undeliverable > 0
        line.flush_device_input()
    finally:
        relay.stop()
