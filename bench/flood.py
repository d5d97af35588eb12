"""A flood on the hall broker (docs/design.md figures; security review #12):
60 s of garbage and fake hellos published as fast as the broker takes them,
on an anonymous Mosquitto the gateway ingests from — the worst case, a
broker without `hcp gateway broker-config`'s users and ACL. Meanwhile one
real, provisioned device sends an event every 100 ms over MQTT (QoS 1) and
times each to its ACK (the gateway ACKs after the FULL commit).

The flood, from `workers` processes writing MQTT packets straight to their
sockets (what an attacker would do, no client library in the way): fake
hellos of made-up devices on their own up topics, random bytes on random
topics, and a share (`real_share`) of fake hellos and random bytes on the
up topic of another real, provisioned device (the victim), with now and
then a payload of 1 MB. The gateway stops listening to a topic so flooded
(gateway/ingest/mqtt.py FLOOD_LIMIT): the victim waits, the others do not.
A flood on the measured device's own topic is a flood no gateway can sort
out on an anonymous broker: the broker-config's ACL is what forbids it.

Figures: the real device's press -> ACK p99 during the flood against the
same device's p99 without it (measured first, same run); the gateway's peak
RSS (VmHWM, target < 200 MB); devices registered (target: the one real
device); messages published and what reached the gateway.

    hcp bench flood [--json] [-p seconds_flood=60] [-p workers=2] [-p real_share=0.05]
"""

import json
import multiprocessing
import os
import random
import shutil
import socket
import struct
import tempfile
import threading
import time

from bench.common import Deadline, percentile, result
from bench.procstat import status_kb
from gateway.files import write_private
from gateway.ingest.mqtt import _no_delay

HALL = "flood-hall"
TOKEN = "bench-flood-token-0123456789"


# -- raw MQTT 3.1.1 packets -----------------------------------------------------
def _varlen(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def mqtt_connect(client_id):
    body = _str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 0) + _str(client_id)
    return b"\x10" + _varlen(len(body)) + body


def mqtt_publish(topic, payload):
    body = _str(topic) + payload
    return b"\x30" + _varlen(len(body)) + body


def _fake_hello(device_id, rng):
    from protocol import messages as M

    return bytes(M.encode({"type": "hello", "session": rng.randint(1, 2**32 - 1), "seq": rng.randint(1, 2**32 - 1),
                           "device_id": device_id, "fw": "0.1", "board": "sim", "boot": 1, "journal_depth": 0,
                           "uptime_ms": 1, "staff_id": "", "paired": 0}, None))


def _worker(port, victim, seconds, seed, real_share, counter):
    """One flooding process: as fast as its socket takes it, for `seconds`."""
    rng = random.Random(seed)
    base = "hcp/%s/dev/" % HALL
    packets = []
    for i in range(4000):
        r = rng.random()
        if r < real_share:
            topic = base + victim + "/up"
            payload = _fake_hello(victim, rng) if i % 2 else rng.randbytes(rng.randint(1, 200))
        elif r < (1 + real_share) / 2:
            d = "FAKE-%08X" % rng.getrandbits(32)
            topic, payload = base + d + "/up", _fake_hello(d, rng)
        else:
            topic, payload = base + rng.randbytes(8).hex() + "/up", rng.randbytes(rng.randint(1, 300))
        packets.append(mqtt_publish(topic, payload))
    big = mqtt_publish(base + victim + "/up", b"\x01" * (1 << 20))
    chunk = b"".join(packets)
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(mqtt_connect("flood-%d-%d" % (seed, sent)))
                s.recv(4)  # CONNACK
                s.settimeout(None)
                n = 0
                while time.monotonic() < end:
                    s.sendall(chunk)
                    sent += len(packets)
                    n += 1
                    if real_share and n % 50 == 0:
                        s.sendall(big)
                        sent += 1
        except OSError:
            time.sleep(0.05)  # the broker dropped us (a big packet, a full queue): again
    with counter.get_lock():
        counter.value += sent


# -- the real device ---------------------------------------------------------------
class RealDevice:
    """A provisioned device on MQTT: uninvited presses (stored and ACKed
    like any event), one every `period_s`, each timed to its ACK."""

    def __init__(self, port, device_id, key):
        import paho.mqtt.client as mqtt

        from gateway.devices.keys import Key
        from protocol.reader import Reader

        self.device_id = device_id
        self.key = Key(key)
        self.reader = Reader(key_for=lambda fr: self.key)
        self.seq = 0
        self.event_seq = 0
        self.boot = 1
        self.sent = {}
        self.lat = []
        self.lock = threading.Lock()
        self.up = "hcp/%s/dev/%s/up" % (HALL, device_id)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="real-" + device_id)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("hcp/%s/dev/%s/down" % (HALL, device_id), 1)
        self.client.on_message = self._on_message
        self.client.on_socket_open = _no_delay
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _send(self, msg):
        from protocol import messages as M

        with self.lock:
            self.seq += 1
            msg = dict(msg, session=self.boot, seq=self.seq)
            self.client.publish(self.up, bytes(M.encode(msg, self.key)), qos=1)

    def hello(self):
        self._send({"type": "hello", "device_id": self.device_id, "fw": "bench", "board": "sim", "boot": self.boot,
                    "journal_depth": 0, "uptime_ms": 1, "staff_id": "", "paired": 1})

    def press(self):
        with self.lock:
            self.event_seq += 1
            q = self.event_seq
            self.sent[(self.boot, q)] = time.monotonic()
        self._send({"type": "event", "device_id": self.device_id, "boot": self.boot, "event_seq": q,
                    "kind": "uninvited", "score": 3, "reasons": [], "invitation": "", "time": int(time.time()),
                    "uptime_ms": q})

    def _on_message(self, c, u, m):
        now = time.monotonic()
        for msg in self.reader.feed(m.payload + b"\x00"):
            if msg["type"] == "ack":
                with self.lock:
                    for i in msg["ids"]:
                        t = self.sent.pop(tuple(i), None)
                        if t is not None:
                            self.lat.append(now - t)
            elif msg["type"] in ("time", "config", "bind", "unbind", "bitmap", "invite", "cancel"):
                self._send({"type": "done", "device_id": self.device_id, "ref_seq": msg["seq"]})

    def run(self, seconds, period_s=0.1):
        """Press every period_s for seconds; the latencies of those ACKed."""
        with self.lock:
            self.lat = []
        end = time.monotonic() + seconds
        t = time.monotonic()
        while t < end:
            self.press()
            t += period_s
            time.sleep(max(0.0, t - time.monotonic()))
        time.sleep(1.0)  # the last ACKs
        with self.lock:
            lost = len(self.sent)
            self.sent.clear()
            return list(self.lat), lost

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


# -- the run --------------------------------------------------------------------------
def run(progress=None, seconds_flood=60, seconds_ref=20, workers=2, real_share=0.05, seconds=240, keep=0):
    from gateway import tomlw
    from gateway.client import Client
    from simulator import procs
    from simulator.broker import BrokerProcess
    from simulator.net import free_port

    say = progress or (lambda m: None)
    deadline = Deadline(seconds)
    work = tempfile.mkdtemp(prefix="hcp-bench-flood-")
    broker = gw = dev = None
    try:
        broker = BrokerProcess(work, kind="mosquitto").start()
        http_port = free_port()
        conf = os.path.join(work, "hall.toml")
        write_private(conf, tomlw.dumps({
                "hall": {"id": HALL, "areaCode": "330100", "deptCode": "D01"},
                "database": {"path": os.path.join(work, "gateway.db")},
                "http": {"listen": "127.0.0.1:%d" % http_port, "token": TOKEN},
                "serial": {"ports": []},
                "mqtt": {"host": "127.0.0.1", "port": broker.port}}))
        gw = procs.gateway(work, conf, http_port).start()
        api = Client("http://127.0.0.1:%d" % http_port, TOKEN)
        if not api.wait_up():
            raise RuntimeError("the gateway did not come up: " + gw.tail())
        for d in ("EV-VICTIM", "EV-REAL"):
            status, body = api.call("POST", "/api/devices/%s/key" % d, {})
            if status != 201:
                raise RuntimeError("provisioning failed: %s %s" % (status, body))
        dev = RealDevice(broker.port, "EV-REAL", bytes.fromhex(body["key"]))
        dev.hello()
        time.sleep(1.0)
        say("reference: the real device alone for %d s" % seconds_ref)
        ref, ref_lost = dev.run(seconds_ref)
        pid = gw.proc.pid
        hwm0 = status_kb(pid, "VmHWM")
        msgs0 = api.call("GET", "/api/status")[1]["mqtt"]["messages"]
        say("flood: %d workers for %d s (%.0f%% on the victim device's topic)" % (workers, seconds_flood,
                                                                                  real_share * 100))
        counter = multiprocessing.get_context("spawn").Value("q", 0)
        ctx = multiprocessing.get_context("spawn")
        procs_ = [ctx.Process(target=_worker, args=(broker.port, "EV-VICTIM", seconds_flood, i, real_share, counter),
                              daemon=True) for i in range(workers)]
        for p in procs_:
            p.start()
        rss = []
        stop = threading.Event()

        def sample():
            while not stop.wait(0.5):
                v = status_kb(pid, "VmRSS")
                if v:
                    rss.append(v)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flooded, lost = dev.run(min(seconds_flood, max(1.0, deadline.left - 30)))
        for p in procs_:
            p.join(max(1.0, min(30.0, deadline.left)))
            if p.is_alive():
                p.terminate()
        stop.set()
        sampler.join(2)
        st = api.call("GET", "/api/status")[1]
        devs = api.call("GET", "/api/devices")[1]
        hwm = status_kb(pid, "VmHWM")
    finally:
        if dev is not None:
            dev.close()
        if gw is not None:
            gw.stop()
        if broker is not None:
            broker.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if not ref or not flooded:
        raise RuntimeError("no ACK measured (reference %d, flooded %d)" % (len(ref), len(flooded)))
    p99, r99 = percentile(flooded, 99) * 1e3, percentile(ref, 99) * 1e3
    registered = [d["device_id"] for d in devs["devices"]]
    return result("flood_ack_p99", p99, "ms", r99,
                  {"seconds_flood": seconds_flood, "workers": workers, "real_share": real_share,
                   "broker": "mosquitto, anonymous (no broker-config)", "transport": "MQTT on loopback",
                   "reference": "the same device's p99 without the flood, same run"},
                  target=50.0, higher_is_better=False,
                  p50_ms=percentile(flooded, 50) * 1e3, max_ms=max(flooded) * 1e3,
                  reference_p50_ms=percentile(ref, 50) * 1e3,
                  acked=len(flooded), unacked=lost + ref_lost,
                  flood_published=counter.value, flood_per_s=counter.value / seconds_flood,
                  gateway_received=st["mqtt"]["messages"] - msgs0, gateway_dropped=st["mqtt"]["dropped"],
                  topic_pauses=st["mqtt"]["floods"],
                  rejected=st["rejected"], registered_devices=registered, fake_registered=len(registered) - 2,
                  gateway_rss_peak_mb=(max(rss) if rss else 0) / 1024.0, gateway_hwm_mb=(hwm or 0) / 1024.0,
                  gateway_hwm_before_mb=(hwm0 or 0) / 1024.0, rss_target_mb=200)


if __name__ == "__main__":
    print(json.dumps(run(progress=print, seconds_flood=10, seconds_ref=5)))
