"""The upstream receiver (simulator/upstream.py) as real processes: what it
stores, its summary, its switchable faults, and the MQTT receiver's
persistent session across its own restart."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from support.upstream import ROOT, Receiver, record

from simulator import upstream


def post(url, body, headers=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_receiver_stores_counts_and_switches(tmp_path):
    rx = Receiver(tmp_path, "http").start()
    try:
        a, b = record("EV-1", 1, 1), record("EV-1", 1, 2, rated=False)
        batch = [record("EV-2", 1, 5, case=i) for i in (1, 2, 3)]
        assert post(rx.url + "/records", a, {"Idempotency-Key": a["idempotencyKey"]}) == (200, {"stored": 1})
        assert post(rx.url + "/records", [a, b] + batch)[0] == 200  # a again: a duplicate
        assert rx.control(refuse_for_s=30)["refusing_s"] > 0
        assert post(rx.url + "/records", a)[0] == 503
        rx.control(reset=True, reject={"field": "projectNo", "pattern": "EV-2", "status": 409})
        status, body = post(rx.url + "/records", [a] + batch)
        assert status == 409 and body["keys"] == [r["idempotencyKey"] for r in batch]
        with urllib.request.urlopen(rx.url + "/summary", timeout=5) as r:
            over_http = json.loads(r.read())
    finally:
        rx.stop()
    s = upstream.summary(rx.db)
    assert s == over_http
    assert s["received"] == 6 and s["unique"] == 5 and s["duplicates"] == 1
    assert s["kinds"] == {"rating": 4, "unrated": 1}
    assert s["events"] == {"rating": 2, "unrated": 1}  # a batch is one event
    assert s["messages"] == 2 and s["requests_without_header_key"] == 1
    assert upstream.records(rx.db)[0] == a
    out = subprocess.run([sys.executable, "-m", "simulator.upstream", "summary", "--db", rx.db],
                         cwd=ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out) == s


def test_mqtt_receiver_keeps_its_session_across_its_restart(tmp_path, mosquitto):
    rx = Receiver(tmp_path, "mqtt", port=mosquitto.port, topic="hcp/records/#").start()
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub-test")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        def send(recs):
            for r in recs:
                pub.publish("hcp/records/gw1", json.dumps(r), qos=1).wait_for_publish(5)

        send([record("EV-1", 1, i) for i in range(1, 51)])
        assert rx.wait_unique(50, 10)["unique"] == 50
        rx.stop()  # the receiver goes away; the broker queues for its session
        send([record("EV-1", 1, i) for i in range(51, 101)])
        pub.publish("hcp/records/gw1", json.dumps([record("EV-2", 1, 1), record("EV-2", 1, 2)]),
                    qos=1).wait_for_publish(5)
        rx.start()
        s = rx.wait_unique(102, 10)
    finally:
        pub.loop_stop()
        pub.disconnect()
        rx.stop()
    assert s["unique"] == 102 and s["received"] == 102
    keys = [k for _m, k, *_ in upstream.arrivals(rx.db)]
    assert keys[:100] == ["EV-1:1:%d/1" % i for i in range(1, 101)]
