"""Forwarding to Mosquitto, QoS 1, until PUBACK and marked delivered
(docs/design.md §5: >= 1.0x a bare paho QoS 1 publish loop).

Value: outbox rows per second from "forwarder started" to "every row marked
delivered in SQLite", with the forwarder's default settings (window 100,
batch 100 records per message).
Reference, same run, same broker, same record payloads: the fastest bare
paho loop docs/design.md §7 found - one record per message, published from the
network thread on each PUBACK, its own window of 100, paho's in-flight limit
off - counting messages PUBACKed per second. Also reported: the forwarder
with batch = 1 (one record per message, as while live), which is the
like-for-like per-message figure.

    python -m bench.forward [--rows N] [--seconds S]
"""

import argparse
import json
import os
import tempfile
import time

from bench.common import Deadline, result

RECORD = {"projectNo": "330100-2026-0000123456", "serviceNumber": "SN-0001", "taskCode": "T-11330100",
          "assessNumber": 1, "satisfaction": 5, "evalDetail": "", "pf": "5",
          "assessTime": "2026-11-24 10:00:00", "areaCode": "330100", "deptCode": "D-001",
          "proManager": "staff-0001", "windowId": "W-01", "deviceId": "EV-000", "rated": True}


def records(n, devices=50):
    out = []
    for i in range(n):
        dev = "EV-%03d" % (i % devices)
        ev = "%s:1:%d" % (dev, i // devices + 1)
        r = dict(RECORD, deviceId=dev, eventId=ev, idempotencyKey=ev + "/1",
                 projectNo="330100-2026-%010d" % i)
        out.append(r)
    return out


def fill_outbox(path, recs, target="bench", created_at=None):
    from gateway.store import db, outbox
    conn = db.open_db(path)
    now = time.time() if created_at is None else created_at
    rows = [(target, r["idempotencyKey"], r["eventId"], r["deviceId"],
             json.dumps(r, ensure_ascii=False, separators=(",", ":")), now) for r in recs]
    for i in range(0, len(rows), 10000):
        conn.execute("BEGIN IMMEDIATE")
        outbox.add(conn, rows[i:i + 10000])
        conn.execute("COMMIT")
    return conn


def paho_loop(port, payloads, window=100, deadline=None):
    """Bare paho QoS 1: publish from the network thread on each PUBACK, own
    window. Returns messages PUBACKed per second."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-paho")
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    state = {"next": 0, "acked": 0, "inflight": 0}

    def pump():
        while state["inflight"] < window and state["next"] < len(payloads):
            info = c.publish("bench/paho", payloads[state["next"]], qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError("publish rc %s" % info.rc)
            state["next"] += 1
            state["inflight"] += 1

    def on_publish(client, userdata, mid, rc, props):
        state["acked"] += 1
        state["inflight"] -= 1
        pump()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    while not c.is_connected():
        c.loop(0.05)
    t0 = time.perf_counter()
    pump()
    while state["acked"] < len(payloads):
        if c.loop(0.01) != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError("paho loop failed")
        if deadline is not None and deadline.over:
            break
    dt = time.perf_counter() - t0
    c.disconnect()
    return state["acked"] / dt


def forward(port, path, n, target, settings, deadline=None, created_at=None):
    """Fill the outbox with n rows, run the forwarder until every row is
    marked delivered; rows per second."""
    from gateway.forward.mqtt import MqttForwarder
    from gateway.store import db

    conn = fill_outbox(path, records(n), target, created_at)
    watch = db.connect(path)
    fw = MqttForwarder(path, target, {"host": "127.0.0.1", "port": port, **settings})
    t0 = time.perf_counter()
    fw.start()
    try:
        while watch.execute("SELECT 1 FROM outbox WHERE target = ? AND state = 0 LIMIT 1",
                            (target,)).fetchone():
            if deadline is not None and deadline.over:
                raise TimeoutError("forwarder did not finish in time: %s" % fw.status())
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        st = fw.status()
    finally:
        fw.stop()
        watch.close()
        conn.close()
    if st["errors"]:
        raise RuntimeError("forwarder reported errors: %s" % st)
    return n / dt, dt


def run(progress=None, rows=100000, paho_messages=50000, seconds=120, window=100, batch=100):
    from simulator.broker import BrokerProcess

    say = progress or (lambda msg: None)
    deadline = Deadline(seconds)
    work = tempfile.mkdtemp(prefix="hcp-bench-forward-")
    broker = BrokerProcess(work, kind="mosquitto").start()
    try:
        payloads = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()
                    for r in records(paho_messages)]
        say("reference: a bare paho QoS 1 loop of %d messages" % paho_messages)
        ref = paho_loop(broker.port, payloads, window=window, deadline=deadline)
        say("ours: %d outbox rows forwarded until PUBACK and marked" % rows)
        rate, dt = forward(broker.port, os.path.join(work, "fw.db"), rows, "bench",
                           {"window": window, "batch": batch}, deadline)
        single_n = min(rows, paho_messages)
        single, _ = forward(broker.port, os.path.join(work, "fw1.db"), single_n, "bench1",
                            {"window": window, "batch": 1}, deadline)
    finally:
        broker.stop()
    return result("forward_mqtt_qos1", rate, "rows/s", ref,
                  {"rows": rows, "window": window, "batch": batch, "payload_bytes": len(payloads[0]),
                   "paho_messages": paho_messages, "broker": "mosquitto"},
                  target=1.0, seconds=dt, batch1_rows_per_s=single, batch1_ratio=single / ref)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=100000)
    p.add_argument("--paho-messages", type=int, default=50000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seconds", type=float, default=120)
    a = p.parse_args()
    print(json.dumps(run(rows=a.rows, paho_messages=a.paho_messages, seconds=a.seconds,
                         window=a.window, batch=a.batch)))


if __name__ == "__main__":
    main()
