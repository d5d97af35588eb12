"""Backlog drain after an outage (docs/design.md §5: 1,000,000 buffered events
delivered in <= 60 s), to Mosquitto, QoS 1, until PUBACK and marked (or,
with --kind http, to the upstream receiver process, until 2xx and marked).

The outbox holds `rows` records queued an hour ago (the outage); the MQTT
forwarder starts with its default settings and the clock runs until every
row is marked delivered. Meanwhile a "hall" keeps producing live events
(`live_rate` per second, each its own committed transaction plus wake()),
and we report how long those waited (created -> marked delivered): FIFO
means they queue behind the backlog, and this shows they are not starved.

Value: seconds to drain `rows`. Reference: the target prorated to `rows`
(60 s x rows / 1,000,000), ratio > 1 = faster than the target. Also printed:
`extrapolated_1m_s` = 1,000,000 / measured rate - an extrapolation unless
rows = 1,000,000 (drain rate is flat in backlog size: reads use the partial
index on pending rows, marks are batched).

    python -m bench.drain [--rows N] [--live-rate R] [--seconds S] [--kind mqtt|http]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from bench.common import Deadline, percentile, result
from bench.forward import fill_outbox, records


class _HttpUpstream:
    """The upstream receiver (simulator/upstream.py) as its own process."""

    def __init__(self, work):
        from simulator.net import free_port, wait_port
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.upstream", "http", "--port", str(self.port),
             "--db", os.path.join(work, "upstream.db")], stdout=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def run(progress=None, rows=1000000, live_rate=50.0, seconds=110, window=100, batch=100, kind="mqtt"):
    from gateway.forward.http import HttpForwarder
    from gateway.forward.mqtt import MqttForwarder
    from gateway.store import db, outbox
    from simulator.broker import BrokerProcess

    say = progress or (lambda msg: None)
    deadline = Deadline(seconds)
    work = tempfile.mkdtemp(prefix="hcp-bench-drain-")
    path = os.path.join(work, "hall.db")
    if kind == "mqtt":
        broker = BrokerProcess(work, kind="mosquitto").start()
        fw = MqttForwarder(path, "province", {"host": "127.0.0.1", "port": broker.port,
                                              "window": window, "batch": batch})
    else:
        broker = _HttpUpstream(work)
        fw = HttpForwarder(path, "province", {"url": "http://127.0.0.1:%d/records" % broker.port,
                                              "batch": batch})
    say("filling the outbox with %d rows queued an hour ago" % rows)
    t_fill = time.perf_counter()
    fill_outbox(path, records(rows), "province", created_at=time.time() - 3600).close()
    fill_s = time.perf_counter() - t_fill
    stop = threading.Event()
    live_keys = []

    def hall():
        conn = db.connect(path)
        i = 0
        while not stop.wait(1.0 / live_rate):
            i += 1
            ev = "LIVE-1:1:%d" % i
            rec = json.dumps({"eventId": ev, "idempotencyKey": ev + "/1", "deviceId": "LIVE-1",
                              "satisfaction": 5, "rated": True})
            conn.execute("BEGIN IMMEDIATE")
            outbox.add(conn, [("province", ev + "/1", ev, "LIVE-1", rec, time.time())])
            conn.execute("COMMIT")
            live_keys.append(ev + "/1")
            fw.wake()
        conn.close()

    watch = db.connect(path)
    live = threading.Thread(target=hall, daemon=True)
    try:
        say("draining to %s" % ("Mosquitto" if kind == "mqtt" else "the HTTP receiver"))
        t0 = time.perf_counter()
        fw.start()
        live.start()
        while watch.execute("SELECT 1 FROM outbox WHERE target = 'province' AND state = 0"
                            " AND key NOT LIKE 'LIVE-%' LIMIT 1").fetchone():
            if deadline.over:
                raise TimeoutError("drain did not finish in time: %s" % fw.status())
            time.sleep(0.02)
        drain_s = time.perf_counter() - t0
        time.sleep(0.5)  # let the last live events through
        stop.set()
        live.join()
        while watch.execute("SELECT 1 FROM outbox WHERE state = 0 LIMIT 1").fetchone() \
                and not deadline.over:
            time.sleep(0.02)
        st = fw.status()
    finally:
        stop.set()
        fw.stop()
        broker.stop()
    waits = [r[0] for r in watch.execute(
        "SELECT delivered_at - created_at FROM outbox WHERE key LIKE 'LIVE-%' AND state = 1")]
    watch.close()
    rate = rows / drain_s
    return result("drain_backlog_" + kind, drain_s, "s", 60.0 * rows / 1e6,
                  {"rows": rows, "window": window, "batch": batch, "live_rate": live_rate,
                   "upstream": "mosquitto" if kind == "mqtt" else "simulator.upstream http", "payload_bytes": len(json.dumps(records(1)[0]))},
                  target="1,000,000 rows in <= 60 s", higher_is_better=False,
                  rows_per_s=rate, extrapolated_1m_s=1e6 / rate,
                  extrapolated=(rows != 1000000), fill_s=fill_s,
                  live_events=len(live_keys), live_delivered=len(waits),
                  live_wait_p50_s=percentile(waits, 50), live_wait_max_s=max(waits) if waits else None,
                  errors=st["errors"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1000000)
    p.add_argument("--live-rate", type=float, default=50.0)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seconds", type=float, default=110)
    p.add_argument("--kind", choices=["mqtt", "http"], default="mqtt")
    a = p.parse_args()
    print(json.dumps(run(rows=a.rows, live_rate=a.live_rate, seconds=a.seconds,
                         window=a.window, batch=a.batch, kind=a.kind)))


if __name__ == "__main__":
    main()
