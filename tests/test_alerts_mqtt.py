"""Alerts on MQTT (real Mosquitto): retained per alert under
P/H/alert/<rule>/<subject>, cleared by an empty retained payload, and
cleared after a restart when the condition went away while the gateway was
down."""

import json
import secrets
import threading

import paho.mqtt.client as mqtt
from support.fakedev import FakeDevice, PtyTransport
from support.gwfixtures import connect, dead_http_upstream, invite, pair
from support.gwharness import InProcess, wait_for, write_config

PREFIX = "hcp/hall-1/alert/"


class Watch:
    """Every alert message (topic -> list of payloads), in arrival order."""

    def __init__(self, port):
        self.seen = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-alerts-" + secrets.token_hex(6))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(PREFIX + "#", qos=1)
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, c, u, m):
        with self.lock:
            self.seen.setdefault(m.topic[len(PREFIX):], []).append(m.payload)

    def last(self, sub):
        with self.lock:
            got = self.seen.get(sub)
            return got[-1] if got else None

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_alerts_published_retained_and_cleared(tmp_path, mosquitto):
    byid = tmp_path / "by-id"
    byid.mkdir()
    kw = dict(ports=[str(byid / "*")], mqtt_port=mosquitto.port, upstreams=[dead_http_upstream()],
              device={"heartbeat_s": 1, "offline_after_missed": 1})
    conf = write_config(tmp_path, alerts={"offline_after_s": 0}, **kw)
    t = PtyTransport(str(byid), "usb-EV-1")
    try:
        with InProcess(conf) as gw:
            wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker")
            dev = connect(FakeDevice("EV-1", t, boot=3), gw)
            pair(gw, dev, "S1", "A01", staff_name="张三")
            invite(gw, dev, "A01", ["P-1"])
            eid = dev.rate(1, ["R2"])
            dev.wait(lambda: eid in dev.acked)
            bad = "bad_rating/EV-1:3:%d" % eid[1]
            watch = Watch(mosquitto.port)
            got = json.loads(wait_for(lambda: watch.last(bad), timeout=5, what="差评 alert on MQTT"))
            assert got["rule"] == "bad_rating" and got["window"] == "A01" and "张三" in got["text"]
            assert "办事效率低" in got["text"]

            # heartbeats stop: offline, alerted; back: cleared with an empty retained payload
            off = "device_offline/EV-1"
            got = json.loads(wait_for(lambda: watch.last(off), timeout=6, what="offline alert"))
            assert got["device_id"] == "EV-1" and got["severity"] == "critical"
            dev.health()
            wait_for(lambda: watch.last(off) == b"", timeout=5, what="offline alert cleared")
            # a late subscriber gets the retained 差评 alert, not the cleared one
            late = Watch(mosquitto.port)
            wait_for(lambda: late.last(bad), timeout=5, what="retained alert")
            assert late.last(off) is None
            late.close()
        # restart with 差评 alerts switched off: the retained one is cleared
        conf = write_config(tmp_path, alerts={"offline_after_s": 3600, "bad_rating": False}, **kw)
        with InProcess(conf) as gw:
            wait_for(lambda: watch.last(bad) == b"", timeout=6, what="差评 alert cleared after restart")
        fresh = Watch(mosquitto.port)
        try:
            # window_bad_share for A01 is still active and retained; the 差评 one is gone
            wait_for(lambda: fresh.last("window_bad_share/A01"), timeout=5, what="share alert retained")
            assert fresh.last(bad) is None
        finally:
            fresh.close()
        watch.close()
    finally:
        t.close()
