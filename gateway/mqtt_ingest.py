"""MQTT ingest for Wi-Fi evaluators, and the gateway's retained state topics.

Topics (P = `[mqtt] topic_prefix`, H = `[hall] id`, D = device id):

    P/H/dev/D/up            device -> gateway: frames, QoS 1
    P/H/dev/D/down          gateway -> device: frames, QoS 1
    P/H/dev/D/availability  retained "online" / "offline" (by the gateway)
    P/H/dev/D/state         retained JSON: the device's registry summary
    P/H/gateway/availability  retained "online"; "offline" is the gateway's last will
    P/H/gateway/state         retained JSON: gateway status summary

A payload carries exactly the bytes a serial line would: one or more COBS
frames, each followed by 0x00 (a missing final 0x00 is supplied). The frames
are the same, so a device is the same device (same key, same replay state,
same event ids) whatever its transport. A frame whose device_id is not the
one in its topic is refused (`topic`).

paho's network thread owns the connection and reconnects with capped
back-off (1 s doubling to 30 s); subscriptions and the availability topic
are renewed on every connect.
"""

import json
import logging
import threading

import paho.mqtt.client as mqtt

from gateway.router import Link
from protocol.reader import Reader

log = logging.getLogger("hcp.gateway.mqtt")


class MqttLink(Link):
    def __init__(self, ingest, device_id):
        super().__init__()
        self.ingest = ingest
        self.expect_device = device_id
        self.name = "mqtt"
        self.topic = ingest.topic("dev/%s/down" % device_id)
        self.reader = Reader()

    def send(self, data):
        info = self.ingest.client.publish(self.topic, bytes(data), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN: paho queues it and sends on reconnect.
            raise OSError("MQTT publish to %s failed: %s" % (self.topic, mqtt.error_string(info.rc)))


class MqttIngest:
    def __init__(self, cfg_mqtt, hall_id, router):
        self.cfg = cfg_mqtt
        self.hall_id = hall_id
        self.router = router
        self.links = {}
        self.lock = threading.Lock()
        self.connected = False
        self.connects = 0
        self.messages = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hcp-gw-%s" % hall_id,
                                  clean_session=False)
        if cfg_mqtt.username:
            self.client.username_pw_set(cfg_mqtt.username, cfg_mqtt.password or None)
        self.client.will_set(self.topic("gateway/availability"), b"offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(10000)  # bounded: beyond it send() fails, counted by the caller
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def topic(self, rest):
        return "%s/%s/%s" % (self.cfg.topic_prefix, self.hall_id, rest)

    def start(self):
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self):
        try:
            if self.connected:
                self.client.publish(self.topic("gateway/availability"), b"offline", qos=1,
                                    retain=True).wait_for_publish(2)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()

    def status(self):
        return {"host": self.cfg.host, "port": self.cfg.port, "connected": self.connected,
                "connects": self.connects, "messages": self.messages,
                "devices": sorted(self.links),
                "errors": {d: dict(link.reader.errors) for d, link in self.links.items()
                           if link.reader.errors}}

    # --- paho callbacks (its network thread) --------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT connect refused: %s", reason_code)
            return
        self.connected = True
        self.connects += 1
        client.subscribe(self.topic("dev/+/up"), qos=1)
        client.publish(self.topic("gateway/availability"), b"online", qos=1, retain=True)
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected = False
        log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_message(self, client, userdata, message):
        parts = message.topic.split("/")
        # P may itself contain '/': take the device id from the end.
        if len(parts) < 4 or parts[-1] != "up" or parts[-3] != "dev":
            return
        device_id = parts[-2]
        self.messages += 1
        with self.lock:
            link = self.links.get(device_id)
            if link is None:
                link = self.links[device_id] = MqttLink(self, device_id)
        data = message.payload
        if not data.endswith(b"\x00"):
            data += b"\x00"
        packets = link.reader.packets(data)
        if packets:
            self.router.packets(link, packets, link.reader)

    # --- state topics -------------------------------------------------------
    def publish_device(self, dev):
        if not self.connected:
            return
        self.client.publish(self.topic("dev/%s/availability" % dev.device_id),
                            b"online" if dev.online else b"offline", qos=1, retain=True)
        self.client.publish(self.topic("dev/%s/state" % dev.device_id),
                            json.dumps(dev.summary(), ensure_ascii=False).encode(), qos=1, retain=True)

    def publish_gateway(self, summary):
        if not self.connected:
            return
        self.client.publish(self.topic("gateway/state"),
                            json.dumps(summary, ensure_ascii=False).encode(), qos=1, retain=True)
