"""`hcp sim fleet --fast`: the hall of simulator/hall.py (real gateway
process, real broker, the same upstream receivers and faults) with
in-process evaluators (simulator/fastdev.py: each one the firmware's own
modules, loaded per device by simulator/fastvm.py, on a CPython board) on
the gateway's MQTT ingest for Wi-Fi evaluators (gateway/README.md "MQTT
topics"):

    P/H/dev/D/up    device -> gateway, QoS 1, frames as on a serial line
    P/H/dev/D/down  gateway -> device, QoS 1

A few paho clients carry every device's topics (one per 1,000 devices, at
most 4: each has its own network thread, which delivers the gateway's frames
to the devices), and a couple of scheduler threads run the devices' turns
when the firmware's own timers (hello, retransmit, heartbeat, invitation
timeout, thanks, debounce, stuck buttons) are due, from one heap of due
times: no thread per device.

The firmware's code, not the MicroPython VM: no 64 KB heap, no framebuf
drawing, no serial line (so no line-noise). The default mode and CI run the
VM processes; tests/test_sim_fast_parity.py holds both to the same frames.
"""

import heapq
import itertools
import threading
import time
import tomllib

import paho.mqtt.client as mqtt

from gateway import tomlw
from gateway.files import write_private
from simulator.fastdev import FastDevice
from simulator.hall import GIVEN, SURNAMES, HallError, SimHall, Window
from tools import pair as pairing
from tools import provision

PREFIX = "hcp"
PER_CLIENT = 1000
FULL_PAIRING = 20  # devices paired with their rendered screens (bitmaps); the rest without


class Scheduler:
    """Runs dev.turn() when each device's nearest timer is due."""

    def __init__(self, threads=2):
        self.heap = []
        self.cond = threading.Condition()
        self.n = itertools.count()
        self.stopping = False
        self.turns = 0
        self.threads = [threading.Thread(target=self._run, name="fast-sched-%d" % i, daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def schedule(self, dev, ms):
        at = time.monotonic() + ms / 1000.0
        with self.cond:
            cur = getattr(dev, "_sched", None)
            if cur is not None and cur <= at + 0.002:
                return  # already due sooner
            dev._sched = at
            first = not self.heap or at < self.heap[0][0]
            heapq.heappush(self.heap, (at, next(self.n), dev))
            if first:
                self.cond.notify()

    def _run(self):
        while True:
            with self.cond:
                while True:
                    if self.stopping:
                        return
                    if self.heap:
                        at, _, dev = self.heap[0]
                        wait = at - time.monotonic()
                        if wait <= 0:
                            heapq.heappop(self.heap)
                            if dev._sched != at:
                                continue  # superseded by an earlier entry
                            dev._sched = None
                            break
                        self.cond.wait(wait)
                    else:
                        self.cond.wait()
            self.turns += 1
            try:
                dev.turn()
            except Exception as err:  # one device's bug must not stop the hall
                dev.errors = getattr(dev, "errors", 0) + 1
                if dev.errors <= 3:
                    print("[fast] %s: %r" % (dev.name, err))

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        for t in self.threads:
            t.join(5)


class MqttTransport:
    """Few paho clients for all fast devices."""

    def __init__(self, port, hall_id, host="127.0.0.1", threads=2):
        self.port, self.host, self.hall_id = port, host, hall_id
        self.clients = []
        self.devices = {}  # device id -> FastDevice
        self.sched = Scheduler(threads).start()
        self.published = 0
        self.received = 0

    def topic(self, device_id, way):
        return "%s/%s/dev/%s/%s" % (PREFIX, self.hall_id, device_id, way)

    def _client(self, i):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hcp-fast-%s-%d" % (self.hall_id, i),
                        clean_session=False)
        c.user_data_set({"devs": [], "subscribed": threading.Event()})
        c.reconnect_delay_set(0.2, 2)
        c.max_inflight_messages_set(1000)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.connect_async(self.host, self.port, 30)
        c.loop_start()
        return c

    def add(self, devs):
        """Give the new devices their topics: a client per PER_CLIENT, at most 4."""
        want = min(4, max(1, (len(self.devices) + len(devs) + PER_CLIENT - 1) // PER_CLIENT))
        while len(self.clients) < want:
            self.clients.append(self._client(len(self.clients)))
        for d in devs:
            c = self.clients[len(self.devices) % len(self.clients)]
            self.devices[d.device_id] = d
            ud = c.user_data_get()
            ud["devs"].append(d.device_id)
            d.client = c
        for c in self.clients:  # (re)subscribe everything: SUBACK before any hello
            ud = c.user_data_get()
            ud["subscribed"].clear()
            if c.is_connected():
                self._subscribe(c, ud)
        deadline = time.monotonic() + 30
        for c in self.clients:
            if not c.user_data_get()["subscribed"].wait(max(0.1, deadline - time.monotonic())):
                raise HallError("fast devices: MQTT subscriptions not acknowledged within 30 s")

    def _subscribe(self, c, ud):
        topics = [(self.topic(d, "down"), 1) for d in ud["devs"]]
        ud["pending"] = set()
        for i in range(0, len(topics), 200):
            rc, mid = c.subscribe(topics[i:i + 200])
            if rc == mqtt.MQTT_ERR_SUCCESS:
                ud["pending"].add(mid)
        if not ud["pending"]:
            ud["subscribed"].set()

    def _on_connect(self, c, ud, flags, reason_code, properties):
        if not reason_code.is_failure:
            self._subscribe(c, ud)

    def _on_subscribe(self, c, ud, mid, reason_codes, properties):
        ud["pending"].discard(mid)
        if not ud["pending"]:
            ud["subscribed"].set()

    def _on_message(self, c, ud, message):
        parts = message.topic.split("/")
        dev = self.devices.get(parts[-2]) if len(parts) >= 2 and parts[-1] == "down" else None
        if dev is not None:
            self.received += 1
            try:
                dev.receive(message.payload)
            except Exception:  # shown, not lost in paho's thread
                dev.errors = getattr(dev, "errors", 0) + 1
                if dev.errors <= 3:
                    import traceback

                    traceback.print_exc()

    # -- what the devices call -------------------------------------------------
    def publish(self, dev, data):
        # Not connected: paho queues it (QoS 1) and sends it on reconnect;
        # the device resends anyway until it is acknowledged.
        dev.client.publish(self.topic(dev.device_id, "up"), bytes(data), qos=1)
        self.published += 1

    def schedule(self, dev, ms):
        self.sched.schedule(dev, ms)

    def stop(self):
        self.sched.stop()
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


class FastHall(SimHall):
    """SimHall with in-process evaluators over the gateway's MQTT ingest."""

    def __init__(self, workdir, devices=5, **kw):
        # The in-process devices speak MQTT without users of their own yet:
        # an open loopback broker (the Wi-Fi firmware brings per-device users).
        kw.setdefault("secure", False)
        # Heartbeats of thousands of devices are frames and registry rows:
        # a big hall beats a little slower (the drain waits one heartbeat).
        kw.setdefault("heartbeat_s", max(2, min(10, devices // 500)))
        super().__init__(workdir, devices=devices, **kw)
        self.transport = None
        # An actor thread per window: thousands of them, small stacks.
        threading.stack_size(512 * 1024)

    def start_servers(self, progress=None):
        say = progress or (lambda msg: None)
        self.ttydir = self.workdir / "tty"  # no serial devices; the gateway's glob finds none
        self.ttydir.mkdir(exist_ok=True)
        self._start_services(say)
        say("gateway: up, API on 127.0.0.1:%d, MQTT ingest on the hall broker" % self.http_port)
        self.transport = MqttTransport(self.broker.port, self.hall_id)
        return self

    def _write_config(self):
        super()._write_config()
        doc = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        doc["mqtt"] = {"host": "127.0.0.1", "port": self.broker.port, "topic_prefix": PREFIX}
        write_private(self.config_path, tomlw.dumps(doc))  # 0600: it holds the API token

    def add_devices(self, n, progress=None, workers=4):
        say = progress or (lambda msg: None)
        first = len(self.windows)
        new = []
        for i in range(first, first + n):
            name = "dev%05d" % i
            dev = FastDevice(name, self.workdir / "devices" / name, "FAST-%05d" % i, self.transport)
            staff = SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7 + self.seed) % len(GIVEN)]
            w = Window(i, dev, "W%03d" % (i + 1), "S%04d" % (1001 + i), staff)
            w.device_id = dev.device_id
            new.append(w)
        # The technician's step over USB, before first boot (tools/provision.py).
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda w: provision.provision_dir(self.api, w.device.flash, w.device_id), new))
        self.transport.add([w.device for w in new])
        self.windows.extend(new)
        for w in new:
            w.device.start()
        self._discover(say, new, timeout=30.0 + n * 0.02)
        if self.pair:
            self._pair_all(say, new, timeout=30.0 + n * 0.02, workers=workers)
        return new

    def _discover(self, say, windows, timeout=30.0):
        """Until the gateway has heard every new device's hello over MQTT."""
        want = {w.device_id for w in windows}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api.call("GET", "/api/devices")
            if status == 200:
                seen = {d["device_id"] for d in body["devices"] if d.get("link") == "mqtt"}
                if want <= seen:
                    say("devices: all %d said hello over MQTT" % len(windows))
                    return
            time.sleep(0.3)
        raise HallError("%d fast devices never said hello" % len(want - seen))

    def _pair_all(self, say, windows, timeout=30.0, workers=4):
        """The first few with tools/pair.py as a technician pairs (their
        screens drawn and sent as bitmaps); the rest by the same POST
        /api/pair without bitmaps (rendering thousands of cards would be
        the run)."""
        reasons = self.reasons()
        from concurrent.futures import ThreadPoolExecutor

        def pair(w):
            if w.index < FULL_PAIRING:
                pairing.pair(self.api, w.device_id, w.staff_id, w.staff_name, w.window, self.display,
                             url_template=self.url_template, reasons=reasons)
                return
            status, body = self.api.call("POST", "/api/pair", {
                "device_id": w.device_id, "staff_id": w.staff_id, "staff_name": w.staff_name,
                "window": w.window, "replace": False, "bitmaps": []}, timeout=30.0)
            if status not in (200, 201):
                raise HallError("pairing %s refused: %s %s" % (w.device_id, status, body))

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(pair, windows))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(w.device.state() == "idle" for w in windows):
                say("pairing: %d devices paired (idle)" % len(windows))
                return
            time.sleep(0.3)
        bad = [w.device.name + "=" + (w.device.state() or "?") for w in windows if w.device.state() != "idle"]
        raise HallError("devices not idle after pairing: %s" % ", ".join(bad[:20]))

    def set_noise(self, rate):
        if rate:
            raise HallError("line-noise does not apply to --fast (no serial line)")

    def stop(self):
        super().stop()
        if self.transport is not None:
            self.transport.stop()
