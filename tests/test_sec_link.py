"""Security review #12, findings 1-6: the attacks on the link, each tried
against a real gateway (in this process) over a real Mosquitto or a pty,
and shown to fail. docs/security.md has the threat model.

1. a device key read off the broker while the device is paired;
2. a device paired while offline taken over by an untagged hello;
3. a (session, seq) of 0xFFFFFFFF locking a device out;
4. a flood of made-up devices and garbage growing the gateway;
5. the gateway's MQTT session taken over under a guessable client id;
6. a frame captured before a gateway restart accepted after it.
"""

import os
import random
import secrets
import threading
import time

import paho.mqtt.client as mqtt
from support.fakedev import FakeDevice, MqttTransport
from support.gwfixtures import connect, dead_http_upstream, invite, pair, provision_key, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import InProcess, wait_for, write_config

from gateway.devices.keys import Key
from protocol import cobs
from protocol import frame as _frame
from protocol import messages as M


class Sniffer:
    """Someone on the hall network with a laptop: subscribes to everything."""

    def __init__(self, port, pattern="#"):
        self.got = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sniff-" + secrets.token_hex(6))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(pattern, qos=1)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        wait_for(self.c.is_connected, what="sniffer connected")
        time.sleep(0.2)

    def _on(self, c, u, m):
        with self.lock:
            self.got.append((m.topic, bytes(m.payload)))

    def frames(self, topic_end="/down"):
        """Every frame seen on topics ending so, decoded without any key."""
        out = []
        with self.lock:
            payloads = [p for t, p in self.got if t.endswith(topic_end)]
        for p in payloads:
            for packet in p.split(b"\x00"):
                if packet:
                    try:
                        out.append(M.parse(_frame.decode(packet)))
                    except Exception:  # noqa: BLE001 - anything a sniffer cannot read is fine
                        pass
        return out

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def publish(port, topic, payloads, qos=0):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker-" + secrets.token_hex(6))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish(topic(i) if callable(topic) else topic, p, qos=qos) for i, p in enumerate(payloads)]
        for info in infos[-50:]:
            info.wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()


def mqtt_gateway(tmp_path, port):
    conf = write_config(tmp_path, mqtt_port=port, upstreams=[dead_http_upstream()])
    return InProcess(conf)


def test_1_no_key_crosses_the_broker_and_a_sniffer_cannot_forge_a_rating(tmp_path, mosquitto):
    sniff = Sniffer(mosquitto.port)
    with mqtt_gateway(tmp_path, mosquitto.port) as gw:
        wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker")
        dev = FakeDevice("EV-M", MqttTransport(mosquitto.port, "EV-M"), boot=4)
        provision_key(gw, dev)  # over USB: not on the broker
        connect(dev)
        pair(gw, dev, "S-1", "W-1")
        inv = invite(gw, dev, "W-1", [{"projectNo": "P-1"}])
        time.sleep(0.3)
        seen = b"".join(p for _, p in sniff.got)
        assert seen, "the sniffer saw the traffic"
        assert dev.key.raw not in seen and dev.key.raw not in _unstuffed(seen)
        binds = [f for f in sniff.frames() if f["type"] == "bind"]
        assert binds and all(set(b) == {"type", "session", "seq", "staff_id", "window"} for b in binds)
        # The old attack: a 1★ for the open invitation, with whatever the
        # sniffer has — no tag, a made-up key, a frame replayed from the wire.
        forged = {"type": "event", "device_id": "EV-M", "boot": 4, "event_seq": 999, "kind": "rating",
                  "score": 1, "reasons": ["R1"], "invitation": inv["invitation"], "time": int(time.time()),
                  "uptime_ms": 1, "session": 4, "seq": 10_000}
        ups = [p for t, p in sniff.got if t.endswith("/EV-M/up") and p.strip(b"\x00")]
        publish(mosquitto.port, "hcp/hall-1/dev/EV-M/up",
                [M.encode(forged, None), M.encode(forged, Key(os.urandom(32)))] + ups)
        wait_for(lambda: gw.gw.registry.rejected.get("badtag", 0) >= 1
                 and gw.gw.registry.rejected.get("untagged", 0) >= 1
                 and gw.gw.registry.rejected.get("replay", 0) >= len(ups), what="forgeries refused")
        assert rows(gw.db, "SELECT state FROM invitations") == [("open",)]
        assert rows(gw.db, "SELECT count(*) FROM events WHERE score = 1")[0][0] == 0
        # The real device is not disturbed: its rating closes the invitation.
        eid = dev.rate(5)
        dev.wait(lambda: eid in dev.acked)
        assert rows(gw.db, "SELECT state FROM invitations") == [("rated",)]
    sniff.close()


def _unstuffed(data):
    """Every COBS packet in data, decoded and joined (the frames' own bytes)."""
    out = bytearray()
    for packet in data.split(b"\x00"):
        try:
            out += cobs.decode_into(packet)
        except Exception:  # noqa: BLE001 - not a frame
            pass
    return bytes(out)


def test_2_a_device_paired_while_offline_cannot_be_taken_over(tmp_path, mosquitto):
    with mqtt_gateway(tmp_path, mosquitto.port) as gw:
        wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker")
        real = FakeDevice("DEV-B", MqttTransport(mosquitto.port, "DEV-B"), boot=2)
        provision_key(gw, real)  # the technician's USB step, then the device is put away
        code, body = gw.api("POST", "/api/pair", {"device_id": "DEV-B", "staff_id": "S-B", "window": "W-B"})
        assert code == 201 and body["sent"] is False
        # The attacker: an untagged hello claiming to be DEV-B with no key.
        sniff = Sniffer(mosquitto.port, "hcp/hall-1/dev/DEV-B/down")
        thief = FakeDevice("DEV-B", MqttTransport(mosquitto.port, "DEV-B-thief"), boot=1)
        thief.t.up = "hcp/hall-1/dev/DEV-B/up"
        for _ in range(3):
            thief.hello(paired=0, key=None)
            thief.send({"type": "done", "device_id": "DEV-B", "ref_seq": 1}, key=None)
            time.sleep(0.2)
        wait_for(lambda: gw.gw.registry.rejected.get("untagged", 0) >= 6, what="untagged refused")
        time.sleep(0.3)
        assert sniff.got == []  # not a single frame answered it: no time, config, bind, card
        d = gw.gw.registry.get("DEV-B")
        assert not d.online and not d.key_confirmed and d.replay.session == 0
        # The real device comes: it gets its binding and rates.
        connect(real)
        real.wait(lambda: real.staff_id == "S-B")
        inv = invite(gw, real, "W-B", [{"projectNo": "P-B"}])
        eid = real.rate(4)
        real.wait(lambda: eid in real.acked)
        assert rows(gw.db, "SELECT state, event_id FROM invitations WHERE id = ?", inv["invitation"])[0][0] == "rated"
        sniff.close()


def test_3_no_jump_of_session_or_seq_locks_a_device_out(hall):
    dev = connect(hall.device("EV-J", boot=5))
    pair(hall, dev, "S-J", "W-J")
    reg = hall.gw.registry
    # Without the key: nothing moves.
    dev.health(key=None, session=0xFFFFFFFF, seq=0xFFFFFFFF)
    dev.health(key=Key(os.urandom(32)), session=0xFFFFFFFF, seq=0xFFFFFFFF)
    wait_for(lambda: reg.rejected.get("untagged", 0) >= 1 and reg.rejected.get("badtag", 0) >= 1,
             what="refused")
    # With the key (stolen, or a device gone wrong): a jump past the bounds is refused.
    dev.health(session=0xFFFFFFFF, seq=0xFFFFFFFF)
    dev.health(seq=dev.seq + 10_000_000)
    wait_for(lambda: reg.rejected.get("jump", 0) >= 2, what="jumps refused")
    assert (reg.get("EV-J").replay.session, reg.get("EV-J").replay.seq) == (5, dev.seq)
    eid = dev.press(3)
    dev.wait(lambda: eid in dev.acked)
    # A jump within the bounds by whoever holds the key moves the state past
    # the real device: its frames are refused, it is challenged, it answers,
    # and it is taken where it is — across its own reboot too.
    dev.health(session=dev.boot + 50, seq=1)
    wait_for(lambda: reg.get("EV-J").replay.session == dev.boot + 50, what="forged jump taken")
    dev.reboot()  # boot 6: still below the forged 55
    dev.seq = 0
    eid = dev.press(4)  # refused as a replay; the challenge follows
    deadline = time.monotonic() + 10
    while eid not in dev.acked and time.monotonic() < deadline:
        dev.resend()
        dev.poll(0.5)
    assert eid in dev.acked, "the device was locked out"
    assert reg.get("EV-J").replay.session == dev.boot
    assert reg.rejected.get("replay", 0) >= 1


def test_4_a_flood_of_made_up_devices_and_garbage_costs_nothing_lasting(tmp_path, mosquitto):
    with mqtt_gateway(tmp_path, mosquitto.port) as gw:
        wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker")
        dev = FakeDevice("EV-REAL", MqttTransport(mosquitto.port, "EV-REAL"), boot=3)
        connect(dev, gw)
        pair(gw, dev, "S-R", "W-R")
        victim = FakeDevice("EV-VICTIM", MqttTransport(mosquitto.port, "EV-VICTIM"), boot=3)
        connect(victim, gw)
        ing = gw.gw.mqtt
        before = ing.messages
        rng = random.Random(1)

        def fake_hello(d):
            return M.encode({"type": "hello", "session": 1, "seq": 1, "device_id": d, "fw": "x", "board": "x",
                             "boot": 1, "journal_depth": 0, "uptime_ms": 1, "staff_id": "", "paired": 0}, None)

        # 3,000 made-up devices on their own topics, and garbage.
        publish(mosquitto.port, lambda i: "hcp/hall-1/dev/FAKE-%06d/up" % i,
                [fake_hello("FAKE-%06d" % i) for i in range(3000)])
        publish(mosquitto.port, lambda i: "hcp/hall-1/dev/%s/up" % rng.randbytes(6).hex(),
                [rng.randbytes(rng.randint(1, 300)) for _ in range(1000)])
        # Nothing of the made-up topics reached the gateway at all.
        time.sleep(0.3)
        assert ing.dropped["unknown"] == 0 and ing.messages - before < 20
        # On a real device's own topic: fake hellos, garbage, one huge payload.
        publish(mosquitto.port, "hcp/hall-1/dev/EV-VICTIM/up",
                [b"\x01" * (4 << 20)] + [fake_hello("EV-VICTIM") for _ in range(200)]
                + [rng.randbytes(200) for _ in range(200)])
        wait_for(lambda: ing.dropped["oversize"] == 1, what="the huge payload dropped", timeout=10)
        # That topic is flooded: the gateway stops listening to it for a while.
        wait_for(lambda: "EV-VICTIM" in ing.status()["flooded"], what="the flooded topic paused")
        assert list(gw.gw.registry.devices) == ["EV-REAL", "EV-VICTIM"]
        assert sorted(ing.links) == ["EV-REAL", "EV-VICTIM"]
        assert rows(gw.db, "SELECT device_id FROM devices ORDER BY 1") == [("EV-REAL",), ("EV-VICTIM",)]
        assert gw.gw.registry.heard == {}  # MQTT hellos of strangers are not even remembered
        # The other devices' ACKs come as before, at once.
        inv = invite(gw, dev, "W-R", [{"projectNo": "P-R"}])
        eid = dev.rate(5)
        dev.wait(lambda: eid in dev.acked, timeout=2)
        assert rows(gw.db, "SELECT state FROM invitations WHERE id = ?", inv["invitation"]) == [("rated",)]
        # The victim keeps its event and gets its ACK once the gateway listens again.
        eid = victim.press(3)
        deadline = time.monotonic() + 15
        while eid not in victim.acked and time.monotonic() < deadline:
            victim.resend()
            victim.poll(0.5)
        assert eid in victim.acked


def test_5_the_gateways_mqtt_session_cannot_be_taken_over_by_a_guessed_client_id(tmp_path, mosquitto):
    conf = write_config(tmp_path, mqtt_port=mosquitto.port, upstreams=[dead_http_upstream()])
    with InProcess(conf) as gw:
        wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker")
        cid = gw.gw.mqtt.client_id
        assert cid.startswith("hcp-gw-hall-1-") and len(cid) == len("hcp-gw-hall-1-") + 16
        dev = FakeDevice("EV-H", MqttTransport(mosquitto.port, "EV-H"), boot=2)
        connect(dev, gw)
        pair(gw, dev, "S-H", "W-H")
        # The attack: connect as the guessable id, persistent session, again and again.
        stolen = []
        for _ in range(5):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hcp-gw-hall-1", clean_session=False)
            c.on_message = lambda c, u, m: stolen.append(m.topic)
            c.connect("127.0.0.1", mosquitto.port)
            c.loop_start()
            c.subscribe("hcp/hall-1/dev/+/up", qos=1)
            eid = dev.press(3)
            dev.wait(lambda eid=eid: eid in dev.acked)
            c.loop_stop()
            c.disconnect()
        assert gw.gw.mqtt.connects == 1  # never kicked off
    # The id is kept: the persistent session survives a restart.
    with InProcess(conf) as gw:
        wait_for(lambda: gw.gw.mqtt.connected, what="gateway on the broker again")
        assert gw.gw.mqtt.client_id == cid


def test_6_a_frame_captured_before_a_restart_is_a_replay_after_it(tmp_path):
    from support.fakedev import PtyTransport

    byid = tmp_path / "by-id"
    byid.mkdir()
    conf = write_config(tmp_path, ports=[str(byid / "*")], upstreams=[dead_http_upstream()])
    t = PtyTransport(str(byid), "usb-EV-R")
    try:
        with InProcess(conf) as gw:
            dev = connect(FakeDevice("EV-R", t, boot=3), gw)
            pair(gw, dev, "S-R", "W-R")
            captured = dev.health(stuck=0b00001)  # the attacker records this one
            wait_for(lambda: gw.gw.registry.get("EV-R").health.get("stuck") == 1, what="stuck")
            dev.health(stuck=0)
            wait_for(lambda: gw.gw.registry.get("EV-R").health.get("stuck") == 0, what="freed")
        with InProcess(conf) as gw:
            wait_for(lambda: any(p.get("open") for p in gw.gw.serial.status()), what="port open")
            t.write(captured)
            wait_for(lambda: gw.gw.registry.rejected.get("replay", 0) >= 1, what="replay refused")
            assert gw.gw.registry.get("EV-R").health.get("stuck") == 0
            assert not [a for a in gw.gw.dashboard.alerts().get("alerts", []) if a.get("rule") == "stuck"]
            # The device itself goes on, after the restart as before.
            dev.reader = type(dev.reader)()
            connect(dev)
            eid = dev.press(5)
            dev.wait(lambda: eid in dev.acked)
    finally:
        t.close()
