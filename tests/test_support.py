"""The test fixtures themselves work: a real broker accepts a QoS 1 publish."""

import paho.mqtt.client as mqtt


def test_mosquitto_fixture_round_trip(mosquitto):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("t/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    import time

    time.sleep(0.2)
    info = pub.publish("t/x", b"hello", qos=1)
    info.wait_for_publish(5)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    pub.loop_stop()
    sub.loop_stop()
    assert got == [b"hello"]
