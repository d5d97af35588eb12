"""The gateway as a real process (`hcp gateway run`) with fake devices on
ptys, a real Mosquitto and a real HTTP upstream receiver process: kill -9 at
random moments, an upstream HTTP outage, a restart of the upstream broker
and of the hall's own MQTT ingest broker; every rating the devices were told was
ACKed is stored, every record reaches both upstreams exactly once in effect."""

import random
import sqlite3
import threading
import time

from support.fakedev import FakeDevice, PtyTransport
from support.gwfixtures import connect
from support.gwharness import GatewayProcess, api, write_config
from support.upstream import PersistentMosquitto, Receiver

DEVICES = 4
ROUNDS = 8  # invitations per device
KILLS = 3


def _events(db):
    conn = sqlite3.connect(db)
    try:
        return {(d, b, s) for d, b, s in conn.execute("SELECT device_id, boot, event_seq FROM events")}
    finally:
        conn.close()


def test_kill9_and_upstream_outage_lose_nothing_and_double_nothing(tmp_path, mosquitto):
    byid = tmp_path / "by-id"
    byid.mkdir()
    # The upstream broker keeps the receiver's session across a graceful
    # restart (a kill -9 of a broker loses what it held: its contract, not ours).
    upstream = PersistentMosquitto(str(tmp_path)).start()
    http_rx = Receiver(tmp_path, "http", name="http-rx").start()
    mqtt_rx = Receiver(tmp_path, "mqtt", port=upstream.port, topic="hcp/records/#", name="mqtt-rx").start()
    conf = write_config(tmp_path, ports=[str(byid / "*")], mqtt_port=mosquitto.port, upstreams=[
        {"name": "prov", "kind": "http", "url": http_rx.url + "/records", "batch": 50,
         "backoff_min_s": 0.05, "backoff_max_s": 0.5},
        {"name": "bus", "kind": "mqtt", "host": "127.0.0.1", "port": upstream.port,
         "topic": "hcp/records/hall-1", "backoff_min_s": 0.05, "backoff_max_s": 0.5},
    ])
    ts = [PtyTransport(str(byid), "usb-EV-%d" % i) for i in range(DEVICES)]
    devs = [FakeDevice("EV-%d" % i, t, boot=10 + i) for i, t in enumerate(ts)]
    gw = GatewayProcess(conf).start()
    rng = random.Random(4)
    expected = {}  # idempotency key -> (event id, satisfaction or None)
    acked_seen = set()
    try:
        for i, dev in enumerate(devs):
            connect(dev, gw)  # provisioned, then hello until answered, as a device does
            code, body = gw.api("POST", "/api/pair", {"device_id": dev.device_id, "staff_id": "S%d" % i,
                                                      "window": "W%d" % i})
            assert code == 201, body
            dev.wait(lambda dev=dev, i=i: dev.staff_id == "S%d" % i)
            dev.health()

        kills = []

        def killer():
            for n in range(KILLS):
                time.sleep(rng.uniform(0.4, 1.5))
                gw.kill9()
                kills.append(time.monotonic())
                time.sleep(rng.uniform(0.0, 0.3))
                gw.start()
                if n == 0:
                    upstream.graceful_restart()
                elif n == 1:
                    mosquitto.restart()  # the ingest broker: the gateway reconnects

        k = threading.Thread(target=killer)
        k.start()
        http_rx.control(refuse_for_s=1.5)  # an upstream outage in the middle of it

        todo = [ROUNDS] * DEVICES
        last_resend = 0.0
        deadline = time.monotonic() + 60
        while (any(todo) or k.is_alive()) and time.monotonic() < deadline:
            for i, dev in enumerate(devs):
                dev.poll(0.005)
                if dev.invitation is not None:
                    inv = dev.invitation
                    score = rng.choice([1, 2, 3, 4, 5, 0])
                    if score == 0:
                        eid = dev.timeout()
                    else:
                        eid = dev.rate(score, ["R%d" % rng.randint(1, 8)] if score <= 2 else [])
                    name = "%s:%d:%d" % (dev.device_id, *eid)
                    for c in range(1, len(inv["cases"]) + 1):
                        expected["%s/%d" % (name, c)] = (name, score or None)
                    todo[i] -= 1
                elif todo[i] and rng.random() < 0.3:
                    cases = ["P-%d-%d-%d" % (i, todo[i], c) for c in range(rng.randint(1, 3))]
                    try:
                        api(gw.port, "POST", "/api/invitations", {"window": "W%d" % i, "cases": cases},
                            timeout=2)
                    except OSError:
                        pass  # the gateway is down right now
                elif rng.random() < 0.2:
                    dev.press(rng.randint(1, 5))  # uninvited: audit only
            now = time.monotonic()
            if now - last_resend > 0.5:  # the devices' resend timers
                last_resend = now
                for dev in devs:
                    dev.resend()
        k.join(30)
        assert not any(todo), "invitations did not get through: %s" % todo
        # Drain: the devices resend until every journal is empty.
        end = time.monotonic() + 20
        while any(d.journal for d in devs) and time.monotonic() < end:
            for dev in devs:
                dev.resend()
                dev.poll(0.1)
        assert not [d.device_id for d in devs if d.journal], "journals not drained"
        for dev in devs:
            acked_seen |= {(dev.device_id, b, s) for b, s in dev.acked}

        stored = _events(str(tmp_path / "gw.db"))
        assert acked_seen <= stored and len(stored) >= 100  # nothing ACKed is lost
        keys = set(expected)
        got_http = http_rx.wait_unique(len(keys), timeout=20)
        got_mqtt = mqtt_rx.wait_unique(len(keys), timeout=20)
        for rx, got in ((http_rx, got_http), (mqtt_rx, got_mqtt)):
            arrived = {a[1] for a in rx.arrivals()}
            assert arrived == keys, (len(arrived), len(keys), sorted(arrived ^ keys)[:5])
            assert got["without_key"] == 0
            for _, key, _, _, rec in rx.arrivals():
                eid, sat = expected[key]
                assert rec["eventId"] == eid and rec.get("satisfaction") == sat
                assert rec["rated"] == (sat is not None)
        code, st = gw.api("GET", "/api/status")
        assert st["session"] == 1 + len(kills) and st["alarm"] is None
        assert st["outbox"]["pending"] == 0
        assert gw.stop() == 0
    finally:
        gw.stop()
        http_rx.stop()
        mqtt_rx.stop()
        upstream.stop()
        for t in ts:
            t.close()
