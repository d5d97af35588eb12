"""The broker processes the simulator, the demo and the tests use: a QoS 1
message goes through each kind, and survives nothing more than it should."""

import time

import paho.mqtt.client as mqtt
import pytest

from simulator.broker import BrokerProcess


def _round_trip(port):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    subscribed = []
    sub.on_subscribe = lambda *a: subscribed.append(1)
    sub.connect("127.0.0.1", port)
    sub.subscribe("t/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not subscribed and time.monotonic() < deadline:
            time.sleep(0.02)
        info = pub.publish("t/x", b"hello", qos=1)
        info.wait_for_publish(10)
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        pub.loop_stop()
        sub.loop_stop()
    return got


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_round_trip_and_kill(tmp_path, kind):
    broker = BrokerProcess(tmp_path, kind=kind).start()
    try:
        assert _round_trip(broker.port) == [b"hello"]
        broker.kill()
        assert not broker.running
        broker.start()
        assert _round_trip(broker.port) == [b"hello"]
    finally:
        broker.stop()


def test_mosquitto_fixture(mosquitto):
    assert _round_trip(mosquitto.port) == [b"hello"]
