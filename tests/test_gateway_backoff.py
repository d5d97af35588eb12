"""gateway/backoff.py, the one back-off formula, and the retries that use
it: a forwarder's (jitter), a serial port's re-open, a command resent to a
device (gateway/devices/downlink.py)."""

import random
import types

from gateway.backoff import Backoff
from gateway.devices import downlink
from gateway.ingest.serial import BACKOFF_START_S, SerialIngest


def test_doubling_to_the_cap_and_reset():
    b = Backoff(0.5, 3.0, jitter=False)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
    assert b.delay(10_000) == 3.0 and b.attempt == 1  # delay() keeps nothing


def test_jitter_stays_in_the_upper_half():
    b = Backoff(0.2, 30.0, rng=random.Random(7))
    for attempt in range(12):
        base = min(30.0, 0.2 * 2 ** attempt)
        got = [b.delay(attempt) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in got), (attempt, got)
        assert len(set(got)) > 1


def test_a_command_is_resent_after_1_2_4_8_8_s():
    dl = downlink.Downlink()
    dl.sent("EV-1", 10, {"type": "time", "time": 1, "tz_min": 480}, now=100.0)
    waits = [1.0]  # the first resend, from sent()
    now, seq = 100.0, 10
    for _ in range(4):
        (p,) = dl.due(now + waits[-1])
        now += waits[-1]
        seq += 1
        dl.requeue(p, seq, now=now)
        waits.append(p.next_at - now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_serial_port_is_reopened_after_doubling_delays(tmp_path):
    cfg = types.SimpleNamespace(ports=[str(tmp_path / "missing")], baudrate=115200, rescan_s=60.0,
                                reopen_max_s=1.0)
    ingest = SerialIngest(cfg, router=None)
    try:
        ingest._scan()
        (port,) = ingest.ports.values()
        waits = []
        for _ in range(6):
            ingest._open(port, now=0.0)
            waits.append(round(port.next_try, 6))
        assert waits == [BACKOFF_START_S, 0.2, 0.4, 0.8, 1.0, 1.0]
    finally:
        ingest.stop()
