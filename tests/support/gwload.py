"""Load for the gateway from many pty devices (not a test; a measuring aid
for the benchmarks issue).

    .venv/bin/python tests/support/gwload.py DEVICES EVENTS_PER_DEVICE [RATE_PER_DEVICE]

Starts `hcp gateway run` on a fresh database with DEVICES pre-paired
devices (keys written to the database), each on its own pty, then streams
tagged `uninvited` events (at most 8 in flight per device, as the firmware;
RATE_PER_DEVICE events/s each, or as fast as ACKs allow) and prints events/s
and press->ACK latency at the device. The load generator runs on the same
machine: on 2 cores it takes one of them.
"""

import os
import pathlib
import select
import sys
import tempfile
import time
import tty

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from support.gwharness import GatewayProcess, write_config  # noqa: E402

from gateway import db  # noqa: E402
from protocol import hmac256  # noqa: E402
from protocol import messages as M  # noqa: E402
from protocol.reader import Reader  # noqa: E402

WINDOW = 8


def main(n, per, rate=0.0):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="gwload-"))
    byid = tmp / "by-id"
    byid.mkdir()
    conf = write_config(tmp, ports=[str(byid / "*")])
    conn = db.open_db(str(tmp / "gw.db"))
    key = bytes(range(32))
    K = hmac256.Key(key)
    masters = []
    for i in range(n):
        m, s = os.openpty()
        tty.setraw(s)
        tty.setraw(m)
        os.set_blocking(m, False)
        os.symlink(os.ttyname(s), str(byid / ("d%04d" % i)))
        masters.append((m, s))
        conn.execute("INSERT INTO devices (device_id, key, key_confirmed) VALUES (?, ?, 1)", ("EV-%04d" % i, key))
    conn.close()
    gw = GatewayProcess(conf).start()
    time.sleep(1.0)  # the ports are opened
    frames = []
    for i in range(n):
        dev = "EV-%04d" % i
        out = [M.encode({"type": "hello", "session": 1, "seq": 1, "device_id": dev, "fw": "load", "board": "sim",
                         "boot": 1, "journal_depth": 0, "uptime_ms": 1, "staff_id": "", "paired": 1}, K)]
        for s in range(1, per + 1):
            out.append(M.encode({"type": "event", "session": 1, "seq": s + 1, "device_id": dev, "boot": 1,
                                 "event_seq": s, "kind": "uninvited", "score": 3, "reasons": [], "invitation": "",
                                 "time": int(time.time()), "uptime_ms": s}, K))
        frames.append(out)
    readers = [Reader(key_for=lambda f: K) for _ in range(n)]
    acked = [0] * n
    pos = [0] * n
    sent_at = [dict() for _ in range(n)]
    lat = []
    fd2i = {m: i for i, (m, _) in enumerate(masters)}
    t0 = time.monotonic()
    next_at = [t0 + i * (1.0 / rate / n if rate else 0) for i in range(n)]
    while sum(acked) < n * per and time.monotonic() - t0 < 300:
        for i, (m, _) in enumerate(masters):
            while pos[i] < len(frames[i]) and pos[i] - 1 - acked[i] < WINDOW and (
                    not rate or pos[i] == 0 or time.monotonic() >= next_at[i]):
                if rate and pos[i] > 0:
                    next_at[i] += 1.0 / rate
                try:
                    os.write(m, frames[i][pos[i]])
                except BlockingIOError:
                    break
                if pos[i] > 0:
                    sent_at[i][pos[i]] = time.monotonic()
                pos[i] += 1
        ready, _, _ = select.select([m for m, _ in masters], [], [], 0.001 if rate else 0.01)
        now = time.monotonic()
        for fd in ready:
            i = fd2i[fd]
            for msg in readers[i].feed(os.read(fd, 65536)):
                if msg["type"] == "ack":
                    for _, sq in msg["ids"]:
                        acked[i] += 1
                        t = sent_at[i].pop(sq, None)
                        if t:
                            lat.append(now - t)
    dt = time.monotonic() - t0
    gw.stop()
    lat.sort()
    print("devices %d, events %d, acked %d in %.2f s = %.0f events/s; press->ACK p50 %.1f ms, p99 %.1f ms"
          % (n, n * per, sum(acked), dt, sum(acked) / dt, lat[len(lat) // 2] * 1e3,
             lat[int(len(lat) * 0.99)] * 1e3))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
