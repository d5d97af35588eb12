"""MQTT ingest for Wi-Fi devices on a real Mosquitto: the same frames, the
same device whatever its transport, retained state/availability topics, the
gateway's last will, a broker restart."""

import json
import secrets
import time

import paho.mqtt.client as mqtt
from support.fakedev import FakeDevice, MqttTransport, PtyTransport
from support.gwfixtures import connect, dead_http_upstream, invite, pair, records
from support.gwharness import GatewayProcess, InProcess, wait_for, write_config


class Retained:
    """A subscriber collecting the last payload per topic."""

    def __init__(self, port, pattern="hcp/#"):
        self.last = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-watch-" + secrets.token_hex(6))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(pattern, qos=1)
        self.c.on_message = lambda c, u, m: self.last.__setitem__(m.topic, m.payload)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def get(self, topic):
        return self.last.get(topic)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_wifi_device_over_mqtt_is_the_same_device_on_serial(tmp_path, mosquitto):
    byid = tmp_path / "by-id"
    byid.mkdir()
    conf = write_config(tmp_path, ports=[str(byid / "*")], mqtt_port=mosquitto.port,
                        upstreams=[dead_http_upstream()])
    with InProcess(conf) as gw:
        wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker")
        mt = MqttTransport(mosquitto.port, "EV-M")
        dev = connect(FakeDevice("EV-M", mt, boot=5), gw)
        pair(gw, dev, "S-M", "W-M")
        invite(gw, dev, "W-M", ["P-1", "P-2"])
        eid = dev.rate(5)
        dev.wait(lambda: eid in dev.acked)
        assert [r["projectNo"] for r in records(gw.db)] == ["P-1", "P-2"]
        assert gw.gw.registry.get("EV-M").link.name == "mqtt"

        watch = Retained(mosquitto.port)
        wait_for(lambda: watch.get("hcp/hall-1/gateway/availability") == b"online", what="gateway online")
        wait_for(lambda: watch.get("hcp/hall-1/dev/EV-M/availability") == b"online", what="device online")
        dev.health()
        wait_for(lambda: watch.get("hcp/hall-1/dev/EV-M/state")
                 and json.loads(watch.get("hcp/hall-1/dev/EV-M/state"))["staff_id"] == "S-M",
                 what="device state")

        # A frame naming another device than its topic is refused.
        other = FakeDevice("EV-OTHER", mt, boot=1, key=dev.key.raw)  # even with EV-M's key
        other.hello()
        wait_for(lambda: gw.gw.registry.rejected.get("topic", 0) >= 1, what="topic mismatch counted")

        # The broker restarts: the gateway reconnects by itself.
        mosquitto.restart()
        wait_for(lambda: gw.gw.mqtt.connects >= 2 and gw.gw.mqtt.connected, timeout=15,
                 what="gateway reconnected")
        mt.close()
        mt = MqttTransport(mosquitto.port, "EV-M")
        dev.t = mt
        eid = dev.press(2)
        dev.wait(lambda: eid in dev.acked, timeout=10)

        # The same device moves to a serial port: same key, no re-pairing.
        pt = PtyTransport(str(byid), "usb-EV-M")
        dev.t = pt
        connect(dev)
        eid = dev.press(1)
        dev.wait(lambda: eid in dev.acked)
        assert gw.gw.registry.get("EV-M").link.name.startswith("serial:")
        code, d = gw.api("GET", "/api/devices/EV-M")
        assert d["rejected"] == {} and d["events"] == 3
        # Heartbeats stop: offline, published retained. (Every command of
        # the device answered first: a late `done` would bring it back.)
        pending = gw.gw.commands.downlink.pending
        dev.wait(lambda: not [p for p in list(pending.values()) if p.device_id == "EV-M"], timeout=10)
        time.sleep(0.2)
        dev.poll(0.05)
        gw.gw.monitor.tick(now=gw.gw.registry.get("EV-M").last_seen + 91)
        wait_for(lambda: watch.get("hcp/hall-1/dev/EV-M/availability") == b"offline", what="device offline")
        watch.close()
        mt.close()
        pt.close()


def test_gateway_last_will_on_kill9(tmp_path, mosquitto):
    conf = write_config(tmp_path, mqtt_port=mosquitto.port)
    watch = Retained(mosquitto.port)
    gw = GatewayProcess(conf).start()
    try:
        wait_for(lambda: watch.get("hcp/hall-1/gateway/availability") == b"online", timeout=10,
                 what="gateway online")
        gw.kill9()
        wait_for(lambda: watch.get("hcp/hall-1/gateway/availability") == b"offline", timeout=10,
                 what="last will")
        gw.start()
        wait_for(lambda: watch.get("hcp/hall-1/gateway/availability") == b"online", timeout=10,
                 what="online again")
        assert gw.stop() == 0
        wait_for(lambda: watch.get("hcp/hall-1/gateway/availability") == b"offline", timeout=10,
                 what="offline on a clean stop")
    finally:
        gw.stop()
        watch.close()
