"""The MQTT forwarder against a real Mosquitto process and the real upstream
receiver process (a persistent-session QoS 1 subscriber), on real SQLite
files: exactly once in effect, per-device order, broker restart and crash,
status and retention."""

import os
import signal
import time

import pytest
from support.upstream import (
    Feeder,
    PersistentMosquitto,
    Receiver,
    make_records,
    order_violations,
    outbox_states,
    queue,
    wait_for,
)

from gateway.forward.mqtt import MqttForwarder, payload_records
from gateway.store import db, outbox

TOPIC = "hcp/records/#"


def settings(port, **kw):
    s = {"name": "province", "host": "127.0.0.1", "port": port, "client_id": "hcp-gw-test",
         "window": 20, "batch": 7, "backoff_min_s": 0.05, "backoff_max_s": 0.5, "poll_s": 0.05}
    s.update(kw)
    return s


def test_happy_path_exactly_once_in_order(tmp_path, mosquitto):
    rx = Receiver(tmp_path, "mqtt", port=mosquitto.port, topic=TOPIC).start()
    dbp = tmp_path / "hall.db"
    backlog = make_records(8, 150)                # queued before the forwarder starts
    live = make_records(8, 100, start=151)       # arrives while it runs
    queue(dbp, ["province"], backlog)
    fw = MqttForwarder(dbp, "province", settings(mosquitto.port)).start()
    try:
        feeder = Feeder(dbp, ["province"], live, chunk=16, every=0.005, wake=fw.wake)
        feeder.start()
        feeder.join(30)
        n = len(backlog) + len(live)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == n, 30)
        s = rx.wait_unique(n, 20)
        st = wait_for(lambda: (lambda x: x if x["backlog"] == 0 else None)(fw.status()), 5)
    finally:
        fw.stop()
        rx.stop()
    assert s["unique"] == n and s["duplicates"] == 0 and s["without_key"] == 0
    assert s["messages"] < n  # several records per message
    assert order_violations(rx.arrivals()) == {}
    assert st["connected"] and st["delivered"] == n and st["errors"] == 0
    assert st["backlog"] == 0 and st["oldest_pending_age_s"] == 0.0
    assert st["topic"] == "hcp/records/hcp-gw-test"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_single_record_messages_with_batch_1(tmp_path, mosquitto, protocol):
    rx = Receiver(tmp_path, "mqtt", port=mosquitto.port, topic=TOPIC).start()
    dbp = tmp_path / "hall.db"
    recs = make_records(3, 20)
    queue(dbp, ["province"], recs)
    fw = MqttForwarder(dbp, "province", settings(mosquitto.port, batch=1, protocol=protocol)).start()
    try:
        s = rx.wait_unique(len(recs), 20)
    finally:
        fw.stop()
        rx.stop()
    assert s["unique"] == len(recs) and s["messages"] == len(recs)
    assert order_violations(rx.arrivals()) == {}


def test_broker_graceful_restart_mid_stream_loses_nothing(tmp_path):
    broker = PersistentMosquitto(str(tmp_path)).start()
    rx = Receiver(tmp_path, "mqtt", port=broker.port, topic=TOPIC).start()
    dbp = tmp_path / "hall.db"
    recs = make_records(10, 300)
    db.open_db(dbp).close()  # the gateway creates and migrates it before forwarding
    fw = MqttForwarder(dbp, "province", settings(broker.port, batch=3)).start()
    try:
        feeder = Feeder(dbp, ["province"], recs, chunk=20, every=0.01, wake=fw.wake)
        feeder.start()
        assert wait_for(lambda: rx.summary()["unique"] >= len(recs) // 4, 20)
        broker.graceful_restart()
        feeder.join(30)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == len(recs), 30)
        s = rx.wait_unique(len(recs), 20)
        st = fw.status()
    finally:
        fw.stop()
        rx.stop()
        broker.stop()
    assert s["unique"] == len(recs), s
    assert st["errors"] >= 1 and st["last_error"]  # it did see the restart


def test_broker_crash_resends_everything_not_pubacked(tmp_path):
    """Rows in flight when the broker freezes and dies were never PUBACKed:
    they must stay pending through the outage and arrive after it."""
    broker = PersistentMosquitto(str(tmp_path)).start()
    rx = Receiver(tmp_path, "mqtt", port=broker.port, topic=TOPIC).start()
    # Save the receiver's session to disk now, so the broker that comes back
    # after the crash still queues for the receiver before it reconnects.
    broker.graceful_restart()
    dbp = tmp_path / "hall.db"
    phase1, phase2, phase3 = make_records(5, 100), make_records(5, 100, start=101), \
        make_records(5, 100, start=201)
    db.open_db(dbp).close()
    fw = MqttForwarder(dbp, "province", settings(broker.port, window=10, batch=5)).start()
    try:
        queue(dbp, ["province"], phase1)
        fw.wake()
        assert rx.wait_unique(len(phase1), 20)["unique"] == len(phase1)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == len(phase1), 10)
        os.kill(broker.proc.pid, signal.SIGSTOP)  # frozen: reads nothing, PUBACKs nothing
        queue(dbp, ["province"], phase2)
        fw.wake()
        assert wait_for(lambda: fw.status()["sent"] >= len(phase1) + 50, 10)  # in flight
        broker.kill()
        queue(dbp, ["province"], phase3)  # the outage goes on
        fw.wake()
        time.sleep(0.5)
        during = outbox_states(dbp, "province")
        st = fw.status()
        broker.start()
        total = len(phase1) + len(phase2) + len(phase3)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == total, 30)
        s = rx.wait_unique(total, 20)
    finally:
        fw.stop()
        rx.stop()
        broker.stop()
    assert during == {"pending": len(phase2) + len(phase3), "delivered": len(phase1), "rejected": 0}
    assert not st["connected"] and st["backlog"] is not None
    assert s["unique"] == total, s


def test_status_during_an_outage_shows_backlog_and_age(tmp_path):
    from support.procs import free_port
    dbp = tmp_path / "hall.db"
    recs = make_records(2, 25)
    queue(dbp, ["province"], recs, created_at=time.time() - 300)
    fw = MqttForwarder(dbp, "province", settings(free_port())).start()  # nobody listens
    try:
        st = wait_for(lambda: (lambda x: x if x["backlog"] == 50 and x["errors"] >= 2 else None)(
            fw.status()), 10)
    finally:
        fw.stop()
    assert st, fw.status()
    assert not st["connected"] and st["delivered"] == 0
    assert 300 <= st["oldest_pending_age_s"] < 400
    assert "cannot connect" in st["last_error"]
    assert outbox_states(dbp, "province") == {"pending": 50, "delivered": 0, "rejected": 0}


def test_retention_purges_old_delivered_rows_but_never_the_newest_id(tmp_path, mosquitto):
    dbp = tmp_path / "hall.db"
    recs = make_records(2, 50)
    queue(dbp, ["province"], recs)
    fw = MqttForwarder(dbp, "province", settings(mosquitto.port, retention_days=0,
                                                 purge_every_s=0.1)).start()
    try:
        assert wait_for(lambda: fw.status()["purged"] == len(recs) - 1, 10), fw.status()
        conn = db.connect(dbp)
        left = conn.execute("SELECT id, state FROM outbox").fetchall()
        # a new row gets a new id, never one already used
        queue(dbp, ["province"], make_records(1, 1, start=999))
        new_id = conn.execute("SELECT max(id) FROM outbox").fetchone()[0]
        assert wait_for(lambda: fw.status()["delivered"] == len(recs) + 1, 10)
        conn.close()
    finally:
        fw.stop()
    assert left == [(len(recs), outbox.DELIVERED)]
    assert new_id == len(recs) + 1


def test_tls_and_password(tmp_path):
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from support.upstream import SecureMosquitto

    broker = SecureMosquitto(str(tmp_path), "gw1", "s3cret").start()
    got = []
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="tls-sub")
    sub.username_pw_set("gw1", "s3cret")
    sub.tls_set(ca_certs=broker.ca, cert_reqs=ssl.CERT_REQUIRED)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("hcp/records/#", qos=1)
    sub.on_message = lambda c, u, m: got.extend(payload_records(m.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    dbp = tmp_path / "hall.db"
    recs = make_records(3, 20)
    queue(dbp, ["province"], recs)
    tls = {"tls": {"ca": broker.ca}, "username": "gw1"}
    bad = MqttForwarder(dbp, "province", settings(broker.port, password="wrong", **tls)).start()
    try:
        st = wait_for(lambda: (lambda x: x if x["errors"] >= 2 else None)(bad.status()), 10)
    finally:
        bad.stop()
    assert st and not st["connected"] and "refused" in st["last_error"]
    assert outbox_states(dbp, "province")["delivered"] == 0
    plain = MqttForwarder(dbp, "province", settings(broker.port, username="gw1", password="s3cret"))
    plain.start()
    try:
        assert wait_for(lambda: plain.status()["errors"] >= 1, 10)  # no TLS: no session
    finally:
        plain.stop()
    assert outbox_states(dbp, "province")["delivered"] == 0
    fw = MqttForwarder(dbp, "province", settings(broker.port, password="s3cret", **tls)).start()
    try:
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == len(recs), 10)
        assert wait_for(lambda: len({r["idempotencyKey"] for r in got}) == len(recs), 10)
    finally:
        fw.stop()
        sub.loop_stop()
        broker.stop()
