"""Test helpers for the forwarders: the upstream receiver as a real process,
a Mosquitto that keeps sessions across a graceful restart, outbox rows, and a
forwarder run in its own process (to kill -9 it)."""

import getpass
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

from gateway.store import db, outbox
from simulator import upstream
from simulator.broker import BrokerProcess, mosquitto_path
from simulator.net import free_port
from simulator.procs import control_http_receiver, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PersistentMosquitto(BrokerProcess):
    """Mosquitto with persistence on: a graceful stop (SIGTERM) saves the
    receiver's persistent session and its queued messages, so a test can
    demand that nothing the broker PUBACKed is lost across it. (A kill -9
    loses what the broker held in memory: that is the broker's contract.)"""

    def __init__(self, workdir, port=None):
        super().__init__(workdir, port=port, kind="mosquitto", persistent=True)

    def graceful_restart(self):
        return self.restart()


class Receiver:
    """`python -m simulator.upstream http|mqtt ...` as a child process."""

    def __init__(self, workdir, mode, port=None, topic=None, name="receiver", args=()):
        self.mode = mode
        self.args = list(args)
        self.db = os.path.join(str(workdir), "%s.db" % name)
        self.port = port if port is not None else free_port()
        self.topic = topic
        self.proc = None
        self.log = os.path.join(str(workdir), "%s.log" % name)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        args = [sys.executable, "-m", "simulator.upstream", self.mode, "--port", str(self.port),
                "--db", self.db]
        if self.mode == "mqtt":
            args += ["--topic", self.topic]
        args += self.args
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "ab"), text=True)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # {"ready": true, ...}
        if not line or not json.loads(line).get("ready") or time.monotonic() > deadline:
            raise RuntimeError("receiver did not start: %r (see %s)" % (line, self.log))
        return self

    def stop(self):
        stop_process(self.proc)

    def control(self, **cmd):
        return control_http_receiver(self.port, **cmd)

    def summary(self):
        return upstream.summary(self.db)

    def arrivals(self):
        return upstream.arrivals(self.db)

    def wait_unique(self, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.summary()
            if s["unique"] >= n:
                return s
            time.sleep(0.05)
        return self.summary()


def record(device, boot, seq, case=1, **extra):
    event_id = "%s:%d:%d" % (device, boot, seq)
    rec = {"projectNo": "P-%s-%d-%d" % (device, boot, seq), "serviceNumber": "S1", "taskCode": "T1",
           "assessNumber": 1, "satisfaction": 5, "evalDetail": "", "pf": "5",
           "assessTime": "2026-11-24 10:00:00", "areaCode": "330100", "deptCode": "D1",
           "proManager": "staff-%s" % device, "windowId": "W-%s" % device, "deviceId": device,
           "eventId": event_id, "rated": True, "idempotencyKey": "%s/%d" % (event_id, case)}
    rec.update(extra)
    return rec


def queue(db_path, targets, records, created_at=None):
    """Commit records to the outbox for every target; returns how many rows."""
    conn = db.open_db(db_path)
    now = time.time() if created_at is None else created_at
    rows = [(t, r["idempotencyKey"], r["eventId"], r["deviceId"],
             json.dumps(r, ensure_ascii=False, separators=(",", ":")), now)
            for r in records for t in targets]
    conn.execute("BEGIN IMMEDIATE")
    n = outbox.add(conn, rows)
    conn.execute("COMMIT")
    conn.close()
    return n


def make_records(devices, per_device, boot=1, start=1):
    """Interleaved across devices, each device's in seq order."""
    out = []
    for seq in range(start, start + per_device):
        for d in range(devices):
            out.append(record("EV-%03d" % d, boot, seq))
    return out


def outbox_states(db_path, target):
    conn = db.connect(db_path)
    rows = dict(conn.execute("SELECT state, count(*) FROM outbox WHERE target = ? GROUP BY state",
                             (target,)).fetchall())
    conn.close()
    return {"pending": rows.get(0, 0), "delivered": rows.get(1, 0), "rejected": rows.get(2, 0)}


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


FORWARDER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, %(root)r)
    from gateway.forward.mqtt import MqttForwarder
    from gateway.forward.http import HttpForwarder
    cls = {"mqtt": MqttForwarder, "http": HttpForwarder}[sys.argv[1]]
    f = cls(sys.argv[2], sys.argv[3], json.loads(sys.argv[4])).start()
    print("started", flush=True)
    while True:
        time.sleep(0.05)
        f.wake()
""")


def forwarder_process(kind, db_path, name, settings):
    """A forwarder in its own Python process (so a test can kill -9 it)."""
    proc = subprocess.Popen([sys.executable, "-c", FORWARDER_SCRIPT % {"root": ROOT}, kind,
                             str(db_path), name, json.dumps(settings)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


class Feeder(threading.Thread):
    """Queues records in chunks over time, as a live gateway would, each
    chunk one committed transaction; calls `wake` (if given) after each."""

    def __init__(self, db_path, targets, records, chunk=50, every=0.01, wake=None):
        super().__init__(daemon=True)
        self.db_path, self.targets, self.records = db_path, targets, records
        self.chunk, self.every, self.wake = chunk, every, wake
        self.done = 0

    def run(self):
        for i in range(0, len(self.records), self.chunk):
            queue(self.db_path, self.targets, self.records[i:i + self.chunk])
            self.done = min(len(self.records), i + self.chunk)
            if self.wake:
                self.wake()
            time.sleep(self.every)


def seq_of(key):
    """'EV-001:1:42/1' -> (1, 42)"""
    event = key.split("/")[0]
    _, boot, seq = event.split(":")
    return int(boot), int(seq)


def order_violations(arrivals):
    """Devices whose records first arrived out of (boot, seq) order."""
    seen, per_device = set(), {}
    for _msg, key, _hk, device, _rec in arrivals:
        if key in seen:
            continue
        seen.add(key)
        per_device.setdefault(device, []).append(seq_of(key))
    return {d: s for d, s in per_device.items() if s != sorted(s)}


class SecureMosquitto(BrokerProcess):
    """Mosquitto with one TLS listener (a CA and server certificate made with
    openssl for 127.0.0.1) and a password file: anonymous clients refused."""

    def __init__(self, workdir, username, password, port=None):
        super().__init__(workdir, port=port, kind="mosquitto")
        self.username, self.password = username, password
        self.ca = os.path.join(self.workdir, "ca.pem")

    def _make_certs(self):
        d = self.workdir
        run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True, timeout=60)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=hcp test CA", "-keyout", "ca.key", "-out", "ca.pem")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
        with open(os.path.join(d, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
        passwd = os.path.join(d, "passwd")
        run("mosquitto_passwd", "-b", "-c", passwd, self.username, self.password)
        return passwd

    def _command(self):
        passwd = self._make_certs() if not os.path.exists(os.path.join(self.workdir, "passwd")) \
            else os.path.join(self.workdir, "passwd")
        conf = os.path.join(self.workdir, "mosquitto-tls-%d.conf" % self.port)
        with open(conf, "w") as f:
            f.write("user %s\n" % getpass.getuser())
            f.write("listener %d 127.0.0.1\n" % self.port)
            f.write("cafile %s\ncertfile %s\nkeyfile %s\n" % (
                self.ca, os.path.join(self.workdir, "server.pem"),
                os.path.join(self.workdir, "server.key")))
            f.write("allow_anonymous false\npassword_file %s\n" % passwd)
            f.write("max_queued_messages 0\nmax_inflight_messages 0\npersistence false\n")
        return [mosquitto_path(), "-c", conf]
