"""A simulated hall: N evaluators running the real firmware, each on its own
serial cable, a real gateway process, a broker, and two upstream receivers —
everything a fault can hit.

    hall = SimHall(workdir, devices=20, seed=1).start(progress=print)
    hall.invite(i, ["P-1"])            # the clerk at window i
    hall.devices[i].press(5)           # the citizen
    hall.power_cut(i); hall.kill_gateway(); hall.restart_broker()
    hall.upstream_outage(5)
    hall.stop()

The gateway forwards every record to two upstream targets: an HTTP endpoint
(the provincial platform; `upstream-outage` makes it refuse) and the MQTT
broker (`broker-restart` kills it), with a receiver on each that stores what
really arrived.
"""

import os
import pathlib
import secrets
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor

from gateway import tomlw
from gateway.client import Client
from gateway.files import write_private
from gateway.settings import DEFAULT_URL_TEMPLATE
from simulator import procs
from simulator.broker import BrokerProcess, free_port
from simulator.device import SimDevice
from simulator.wire import Line, Relay
from tools import flash, provision
from tools import pair as pairing

# The firmware's budget, -X heapsize=64K, is what every simulated device
# gets (firmware/README.md "Heap" has what it holds).
DEFAULT_HEAP = "64K"
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


class HallError(RuntimeError):
    pass


class Window:
    """A service window: its device, the staff member bound to it."""

    def __init__(self, index, device, window, staff_id, staff_name):
        self.index = index
        self.device = device
        self.window = window
        self.staff_id = staff_id
        self.staff_name = staff_name
        self.device_id = ""
        self.lock = threading.Lock()  # one actor at a time at this window


class SimHall:
    def __init__(self, workdir, devices=5, seed=0, noise=0.0, broker="auto", heap=None,
                 invite_timeout_s=4, heartbeat_s=2, stuck_ms=800, hall_id="sim-hall", http_port=None,
                 pair=True, secure=None, board="sim"):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.n = devices
        self.seed = seed
        self.noise = noise
        self.broker_kind = broker
        self.heap = heap or DEFAULT_HEAP
        self.invite_timeout_s = invite_timeout_s
        self.heartbeat_s = heartbeat_s
        self.stuck_ms = stuck_ms
        self.hall_id = hall_id
        self.pair = pair  # False: devices come up unpaired (a technician pairs them)
        # secure: the broker runs what `hcp gateway broker-config` writes (None:
        # when it is Mosquitto). The gateway's MQTT upstream then has a user.
        self.secure = secure
        self.mqtt_auth = {}
        self.token = secrets.token_urlsafe(16)
        self.http_port = http_port or free_port()
        self.relay = None
        self.broker = None
        self.gateway = None
        self.receivers = {}
        self.windows = []
        self.api = Client("http://127.0.0.1:%d" % self.http_port, self.token)
        # The evaluators' board: `sim` (hal_sim), or virtual ESP32 / RP2040
        # boards (simulator/board.py: hal_machine, the panel driver, GPIO).
        self.board = board
        self.display = flash.board_settings(board)["display"]
        self.faults = {}
        self.url_template = DEFAULT_URL_TEMPLATE

    @property
    def devices(self):
        return [w.device for w in self.windows]

    # -- bring-up -------------------------------------------------------
    def start(self, progress=None):
        """The servers, then `devices` evaluators, discovered and paired."""
        self.start_servers(progress)
        self.add_devices(self.n, progress)
        return self

    def start_servers(self, progress=None):
        """Relay, firmware bundle, broker, upstream receivers, gateway: the
        hall without its evaluators (add_devices brings them)."""
        say = progress or (lambda msg: None)
        self.relay = Relay().start()
        # Every device runs the firmware as flashed: compiled once, installed
        # into each device's flash directory (tools/flash.py).
        self.bundle = self.workdir / "bundle"
        self.bundle_files = flash.build(self.board, self.bundle)
        say("firmware: compiled %d files with mpy-cross" % len(self.bundle_files))
        # The gateway finds its ports through a glob of links, as a hall's
        # /dev/serial/by-id/*: evaluators added later are picked up at its
        # next rescan, with no new config and no restart.
        self.ttydir = self.workdir / "tty"
        self.ttydir.mkdir(exist_ok=True)
        self._start_services(say)
        say("gateway: up, API on 127.0.0.1:%d" % self.http_port)
        return self

    def _start_services(self, say):
        """Broker, upstream receivers, then the gateway, up and answering. A
        Mosquitto runs the config `hcp gateway broker-config` writes for this
        hall (TLS, a user each, the ACL), as a hall's broker should."""
        self.broker = BrokerProcess(self.workdir, kind=self.broker_kind, persistent=True)
        self.receivers["http"] = procs.http_receiver(self.workdir).start()
        self._write_config()
        reader = {}
        if self.secure is None:
            self.secure = self.broker.kind == "mosquitto"
        if self.secure:
            reader = self._secure_broker()
        say("broker: starting (%s%s)" % (self.broker.kind, ", TLS + users + ACL" if self.secure else ""))
        self.broker.start()
        say("broker: %s on 127.0.0.1:%d" % (self.broker.kind, self.broker.port))
        self.receivers["mqtt"] = procs.mqtt_receiver(self.workdir, self.broker.port, "hcp/records/#",
                                                     **reader).start()
        self.gateway = procs.gateway(self.workdir, self.config_path, self.http_port).start()
        if not self.api.wait_up():
            raise HallError("the gateway API did not come up:\n" + self.gateway.tail())

    def add_devices(self, n, progress=None, workers=4):
        """Bring `n` more evaluators into the running hall: a cable each,
        the firmware installed, powered on once the gateway has opened its
        end, discovered and paired. Returns the new windows."""
        say = progress or (lambda msg: None)
        first = len(self.windows)
        new = []
        for i in range(first, first + n):
            name = "dev%03d" % i
            line = self.relay.add(Line(name, rate=0.0, seed=self.seed * 1000 + i))
            fdir = self.workdir / "devices" / name
            if self.board == "sim":
                dev = SimDevice(name, fdir, line, heap=self.heap, main=fdir / "main.py")
            else:
                from simulator.board import BoardDevice

                dev = BoardDevice(name, fdir, line, heap=self.heap, board=self.board,
                                  seed=self.seed * 1000 + i)
            staff = SURNAMES[i % len(SURNAMES)] + GIVEN[(i * 7 + self.seed) % len(GIVEN)]
            new.append(Window(i, dev, "W%03d" % (i + 1), "S%04d" % (1001 + i), staff))
        # Installing fsyncs every file (GIL released): a few at a time. Then
        # the technician's second step over the USB cable: each device gets
        # its key from the gateway (tools/provision.py), before it first boots.
        def install(w):
            flash.install(self.bundle, self.bundle_files, w.device.flash)
            w.device_id, _ = provision.provision_dir(self.api, w.device.flash,
                                                     getattr(w.device, "device_id", None))

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(install, new))
        for w in new:
            os.symlink(w.device.line.gateway_path, self.ttydir / w.device.name)
        self.windows.extend(new)
        self._wait_ports_open(new, timeout=10.0 + n * 0.01)
        for w in new:
            w.device.start()
        # Hundreds of VMs boot at once on a few cores: allow for it.
        self._discover(say, new, timeout=30.0 + n * 0.05)
        if self.pair:
            self._pair_all(say, new, timeout=30.0 + n * 0.05, workers=workers)
        for w in new:
            w.device.line.rate = self.noise
        return new

    def _wait_ports_open(self, windows, timeout):
        """Until the gateway has opened the ports of `windows` (its rescan):
        a hello sent before that would wait for the firmware's resend."""
        want = {str(self.ttydir / w.device.name) for w in windows}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api.call("GET", "/api/status")
            if status == 200:
                opened = {p.get("path") for p in body.get("serial") or () if p.get("open")}
                if want <= opened:
                    return
            time.sleep(0.2)
        raise HallError("the gateway did not open %d new ports within %.0f s" % (len(want), timeout))

    def _secure_broker(self):
        """The broker's files from this hall's config (gateway/broker_config.py),
        the gateway's MQTT upstream given its user, password file and CA;
        returns the records reader's connection options."""
        from gateway import broker_config
        from gateway import config as gwconfig

        files = broker_config.write(gwconfig.load(str(self.config_path)), self.workdir / "broker",
                                    hosts=["127.0.0.1"], port=self.broker.port, bind="127.0.0.1",
                                    readers={"upstream": ["hcp/records/#"]})
        self.broker.secure_conf = files["conf"]
        self.mqtt_auth = {"username": files["gateway_user"], "password_file": files["gateway_password_file"],
                          "tls": {"ca": files["ca"]}}
        self._write_config()
        creds = tomllib.loads(pathlib.Path(files["credentials"]).read_text(encoding="utf-8"))
        pw = self.workdir / "broker" / "upstream.password"
        write_private(pw, creds["readers"]["upstream"]["password"] + "\n")
        return {"username": "upstream", "password_file": pw, "ca": files["ca"]}

    def _write_config(self):
        doc = {
            "hall": {"id": self.hall_id, "areaCode": "330100", "deptCode": "D01"},
            "database": {"path": str(self.workdir / "gateway.db")},
            "http": {"listen": "127.0.0.1:%d" % self.http_port, "token": self.token},
            "serial": {"ports": [str(self.ttydir / "*")], "rescan_s": 0.5,
                       "reopen_max_s": 1.0},
            "device": {"invite_timeout_s": self.invite_timeout_s, "heartbeat_s": self.heartbeat_s,
                       "stuck_ms": self.stuck_ms},
            "upstream": [
                {"name": "province", "kind": "http",
                 "url": "http://127.0.0.1:%d/records" % self.receivers["http"].port, "timeout_s": 2},
                dict({"name": "hall-broker", "kind": "mqtt", "host": "127.0.0.1", "port": self.broker.port,
                      "topic": "hcp/records/%s" % self.hall_id}, **self.mqtt_auth),
            ],
        }
        self.config_path = self.workdir / "hall.toml"
        write_private(self.config_path, tomlw.dumps(doc))  # 0600 from the start: it holds the API token

    def _discover(self, say, windows, timeout=30.0):
        """Until each device has said hello on its own port."""
        deadline = time.monotonic() + timeout
        missing = windows
        while time.monotonic() < deadline:
            status, body = self.api.call("GET", "/api/devices")
            if status == 200:
                heard = {d["device_id"]: d.get("link") or "" for d in body["devices"] if d.get("online")}
                missing = [w for w in windows
                           if heard.get(w.device_id) != "serial:%s" % (self.ttydir / w.device.name)]
                if not missing:
                    say("devices: all %d said hello" % len(windows))
                    return
            time.sleep(0.2)
        raise HallError("devices never said hello: %s" % ", ".join(w.device.name for w in missing))

    def reasons(self):
        """The 差评 reasons [(code, label)] of the hall's config, as the gateway reads them."""
        from gateway import config as gwconfig

        return list(gwconfig.load(str(self.config_path)).device.reasons)

    def _pair_all(self, say, windows, timeout=30.0, workers=4):
        reasons = self.reasons()

        def pair(w):
            pairing.pair(self.api, w.device_id, w.staff_id, w.staff_name, w.window, self.display,
                         url_template=self.url_template, reasons=reasons)

        # A few at a time: while one card is drawn here, the gateway stores
        # and sends another's.
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(pair, windows))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(w.device.state() == "idle" for w in windows):
                say("pairing: %d devices show their staff card" % len(windows))
                return
            time.sleep(0.2)
        bad = [w.device.name + "=" + (w.device.state() or "?") for w in windows if w.device.state() != "idle"]
        raise HallError("devices not idle after pairing: %s" % ", ".join(bad))

    # -- the clerk --------------------------------------------------------
    def invite(self, w, cases, timeout_s=None):
        """Open an invitation at window w; (status, invitation id or error)."""
        body = {"window": w.window, "cases": [{"projectNo": c, "serviceNumber": c, "taskCode": "T1"} for c in cases]}
        if timeout_s:
            body["timeout_s"] = timeout_s
        status, res = self.api.call("POST", "/api/invitations", body)
        if status in (200, 201):
            return 200, res.get("id") or res.get("invitation")
        return status, (res or {}).get("error")

    def cancel(self, invitation):
        return self.api.call("POST", "/api/invitations/%s/cancel" % invitation)[0]

    # -- faults -----------------------------------------------------------
    def _count(self, kind):
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def power_cut(self, w, off_s=0.3):
        w.device.power_cut()
        self._count("power-cut")
        time.sleep(off_s)
        w.device.start()

    def kill_gateway(self, off_s=0.5):
        self.gateway.kill9()
        self._count("gateway-kill")
        time.sleep(off_s)
        self.gateway.start()

    def restart_broker(self, off_s=0.5):
        # An operator's restart: the persistent broker saves what it queued
        # for the upstream subscriber. (kill -9 of a broker loses messages it
        # already PUBACKed; no gateway can prevent that, a clustered broker does.)
        self.broker.stop()
        self._count("broker-restart")
        time.sleep(off_s)
        self.broker.start()

    def upstream_outage(self, seconds):
        procs.control_http_receiver(self.receivers["http"].port, refuse_for_s=seconds)
        self._count("upstream-outage")

    def disk_full(self, seconds):
        """The gateway's database runs out of space for `seconds` (a cap at
        its current size through POST /api/storage), then space returns."""
        self.api.call("POST", "/api/storage", {"max_size_mb": 0.001})
        self._count("disk-full")
        time.sleep(seconds)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the gateway may be restarting
            if self.api.call("POST", "/api/storage", {"max_size_mb": 0})[0] == 200:
                return
            time.sleep(0.5)

    def set_noise(self, rate):
        for w in self.windows:
            w.device.line.rate = rate

    # -- the end --------------------------------------------------------------
    def status(self):
        return self.api.call("GET", "/api/status")[1] or {}

    def device_summaries(self):
        status, body = self.api.call("GET", "/api/devices")
        return {d["device_id"]: d for d in body["devices"]} if status == 200 else {}

    def stop(self):
        # SIGTERM to every device first, then reap them: one by one, a
        # thousand would each be waited for in turn.
        for w in self.windows:
            w.device.terminate()
        for w in self.windows:
            w.device.stop()
        if self.gateway:
            self.gateway.stop()
        for r in self.receivers.values():
            r.stop()
        if self.broker:
            self.broker.stop()
        if self.relay:
            self.relay.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def noise_counts(hall):
    lines = [w.device.line for w in hall.windows]
    return {"flipped": sum(x.flipped for x in lines), "dropped": sum(x.dropped for x in lines),
            "duplicated": sum(x.duplicated for x in lines)}


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path
