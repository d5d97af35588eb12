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

What reaches the gateway is bounded by who is provisioned, not by who
publishes: the gateway subscribes to the up topic of each provisioned
device (not to `dev/+/up`), so a flood on made-up topics never arrives;
a payload for a device not in the registry, or larger than MAX_PAYLOAD,
is counted and dropped before anything is decoded, and per-device state
(a link, its reader) exists only for provisioned devices. On a hall broker
configured by `hcp gateway broker-config` nobody but the device itself may
publish on its up topic anyway (docs/security.md).

The client id is `hcp-gw-<hall>-<random>`, made once and kept in the
database (or `[mqtt] client_id`): a persistent session under a client id
anyone can guess could be taken over by anyone who connects with it.

paho's network thread owns the connection and reconnects with capped
back-off (1 s doubling to 30 s); subscriptions and the availability topic
are renewed on every connect.
"""

import json
import logging
import socket
import threading
import time

import paho.mqtt.client as mqtt

from gateway.forward.base import ssl_context
from gateway.ingest.router import Link
from protocol.reader import Reader

log = logging.getLogger("hcp.gateway.mqtt")

MAX_PAYLOAD = 8192  # bytes: a device publishes a few frames at a time, each < 2.1 KB
SUBSCRIBE_CHUNK = 200  # topics per SUBSCRIBE packet
# A device topic that carries more than FLOOD_LIMIT messages in FLOOD_WINDOW_S
# that are not the device's own (bad frames, bad or missing tags) is being
# flooded: the gateway stops listening to it for FLOOD_PAUSE_S (doubling
# while it goes on, up to FLOOD_PAUSE_MAX_S), and drops what still arrives
# on it unread, so that one flooded topic cannot hold up every other
# device's ACKs on the same connection. The device keeps its events in its
# journal and resends them afterwards. (A device sends a few frames a
# second; 50 foreign messages in a quarter second is nobody's device.)
FLOOD_LIMIT = 50
FLOOD_WINDOW_S = 0.25
FLOOD_PAUSE_S = 5.0
FLOOD_PAUSE_MAX_S = 300.0


class MqttLink(Link):
    def __init__(self, ingest, device_id):
        super().__init__()
        self.ingest = ingest
        self.expect_device = device_id
        self.name = "mqtt"
        self.topic = ingest.topic("dev/%s/down" % device_id)
        self.reader = Reader()
        self.window = 0.0  # this second's start (time.monotonic)
        self.count = 0  # messages on the up topic in it
        self.frames = 0  # the device's accepted frames when it began
        self.pause = 0.0  # the last pause, doubled while the flood goes on
        self.paused_until = 0.0

    def send(self, data):
        info = self.ingest.client.publish(self.topic, bytes(data), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN: paho queues it and sends on reconnect.
            raise OSError("MQTT publish to %s failed: %s" % (self.topic, mqtt.error_string(info.rc)))


def _no_delay(client, userdata, sock):
    """paho leaves Nagle's algorithm on: an ACK written right after the PUBACK
    of the event it answers waits for the broker's delayed TCP ACK, ~40 ms
    on Linux (measured: press -> ACK p50 45 ms over MQTT, 2 ms with this)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class MqttIngest:
    def __init__(self, cfg_mqtt, hall_id, router, registry, client_id):
        self.cfg = cfg_mqtt
        self.hall_id = hall_id
        self.router = router
        self.registry = registry
        self.links = {}  # device_id -> MqttLink: provisioned devices only
        self.lock = threading.Lock()
        self.connected = False
        self.connects = 0
        self.messages = 0
        self.dropped = {"unknown": 0, "oversize": 0, "topic": 0, "flooded": 0}
        self.floods = 0  # times a device topic was paused for a flood
        self.client_id = client_id
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        if cfg_mqtt.username:
            self.client.username_pw_set(cfg_mqtt.username, cfg_mqtt.password or None)
        if cfg_mqtt.tls:
            self.client.tls_set_context(ssl_context(cfg_mqtt.tls))
            if isinstance(cfg_mqtt.tls, dict) and cfg_mqtt.tls.get("insecure"):
                self.client.tls_insecure_set(True)
        self.client.will_set(self.topic("gateway/availability"), b"offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(10000)  # bounded: beyond it send() fails, counted by the caller
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = _no_delay
        registry.on_added.append(self._added)

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
        now = time.monotonic()
        return {"host": self.cfg.host, "port": self.cfg.port, "connected": self.connected,
                "connects": self.connects, "messages": self.messages,
                "dropped": dict(self.dropped), "devices": sorted(self.links),
                "flooded": {d: round(link.paused_until - now, 1) for d, link in list(self.links.items())
                            if link.paused_until > now},
                "floods": self.floods,
                "errors": {d: dict(link.reader.errors) for d, link in self.links.items()
                           if link.reader.errors}}

    def _up_topic(self, device_id):
        return self.topic("dev/%s/up" % device_id)

    def _subscribe(self, device_ids):
        topics = [(self._up_topic(d), 1) for d in device_ids]
        for i in range(0, len(topics), SUBSCRIBE_CHUNK):
            rc, _ = self.client.subscribe(topics[i:i + SUBSCRIBE_CHUNK])
            if rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("MQTT subscribe failed: %s (renewed at the next connect)", mqtt.error_string(rc))
                return

    def _added(self, dev):
        if self.connected:
            self._subscribe([dev.device_id])

    # --- paho callbacks (its network thread) --------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT connect refused: %s", reason_code)
            return
        self.connected = True
        self.connects += 1
        now = time.monotonic()
        self._subscribe([d.device_id for d in self.registry.all()
                         if d.device_id not in self.links or self.links[d.device_id].paused_until <= now])
        client.publish(self.topic("gateway/availability"), b"online", qos=1, retain=True)
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected = False
        log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_message(self, client, userdata, message):
        parts = message.topic.split("/")
        # P may itself contain '/': take the device id from the end.
        if len(parts) < 4 or parts[-1] != "up" or parts[-3] != "dev":
            self.dropped["topic"] += 1
            return
        device_id = parts[-2]
        self.messages += 1
        link = self.links.get(device_id)
        if link is None:
            if self.registry.get(device_id) is None:
                self.dropped["unknown"] += 1  # not provisioned: nothing is kept for it
                return
            with self.lock:
                link = self.links.get(device_id)
                if link is None:
                    link = self.links[device_id] = MqttLink(self, device_id)
        if link.paused_until and link.paused_until > time.monotonic():
            self.dropped["flooded"] += 1  # still in the pipe from before the pause: unread
            return
        data = message.payload
        if len(data) > MAX_PAYLOAD:
            self.dropped["oversize"] += 1
            return
        if not data.endswith(b"\x00"):
            data += b"\x00"
        packets = link.reader.packets(data)
        if packets:
            self.router.packets(link, packets, link.reader)
        self._watch(link)

    def _watch(self, link):
        """Count what the up topic carries against what the device sent;
        pause a flooded topic (FLOOD_LIMIT in FLOOD_WINDOW_S)."""
        now = time.monotonic()
        dev = self.registry.get(link.expect_device)
        frames = dev.frames if dev is not None else 0
        if now - link.window >= FLOOD_WINDOW_S:  # a new window
            if link.pause and now > link.paused_until + link.pause * 4:
                link.pause = 0.0  # calm for a while: the next pause starts short again
            link.window, link.count, link.frames = now, 1, frames
            return
        link.count += 1
        if link.count <= FLOOD_LIMIT:
            return
        foreign = link.count - (frames - link.frames)
        if foreign <= FLOOD_LIMIT:
            return
        link.window, link.count, link.frames = now, 0, frames
        link.pause = min(FLOOD_PAUSE_MAX_S, link.pause * 2 or FLOOD_PAUSE_S)
        link.paused_until = now + link.pause
        self.floods += 1
        topic = self._up_topic(link.expect_device)
        self.client.unsubscribe(topic)
        log.warning("MQTT topic %s carried more than %d messages in %.2f s that are not the device's: not"
                    " listened to for %.0f s (the device keeps its events and resends them)", topic, FLOOD_LIMIT,
                    FLOOD_WINDOW_S, link.pause)
        timer = threading.Timer(link.pause, self._resume, (link,))
        timer.daemon = True
        timer.start()

    def _resume(self, link):
        if self.connected and self.registry.get(link.expect_device) is not None:
            link.window, link.count = time.monotonic(), 0
            self._subscribe([link.expect_device])

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

