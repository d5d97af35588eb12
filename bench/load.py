"""Load for the hall gateway from many pty devices speaking the real protocol
(the engine of `bench.ingest` and `bench.ack_latency`; tests/support/gwload.py
is a command line over it).

    hall = LoadHall(workdir, devices=100, events=1000).setup()
    hall.start_gateway()
    stats = hall.stream(rate=0)          # as fast as ACKs allow, 8 in flight per device
    hall.stop_gateway(); hall.check()    # what the database holds vs what was sent

What is real: the gateway is `hcp gateway run` (its own process) with its
config, reading each device on its own pty through its `[serial] ports` glob;
every device has its own 32-byte key, every frame is tagged with it and
carries a growing (session, seq), every event is a real `event` message
(protocol.messages.encode), and the gateway ACKs each only after the FULL
commit. At most WINDOW events are unacknowledged per device, as the firmware
(its journal resend window).

What is prepared before the gateway starts (and how): the devices rows with
their keys (`key_confirmed = 1`, as after a pairing), their bindings (staff
and window), and the invitations the ratings answer. The invitations are
rows written with the very INSERT `gateway.devices.invitations.Invitations.open`
runs (same columns and values: id, window, device, staff, cases JSON,
timeout, created_at), in batched transactions, but without the `invite`
frame going out: the load devices already know which invitation each event
answers. Opening 100k invitations through the API first would measure the
API (one FULL commit each), not ingest.

The event mix (EVENT_MIX, by event number, repeating every 20): 13 x 好评
(score 5 or 4), 2 x score 3, 2 x 差评 (score 1 or 2 with reasons R1 / R1,R3),
2 x unrated (the citizen walked away), 1 x uninvited press (no invitation,
audit only, no record). Every invitation has one case, except every 10th
that has two (a 一次一评 batch), so records = ratings + unrated + the extra
cases; one outbox row per record and upstream target (one target here).
"""

import hashlib
import json
import os
import pathlib
import select
import sqlite3
import subprocess
import sys
import time
import tty

from bench import procstat
from gateway.client import Client
from gateway.devices.keys import Key
from gateway.files import write_private
from protocol import messages as M
from protocol.reader import Reader
from simulator.net import free_port
from simulator.procs import stop_process
from tools.command import hcp_argv

WINDOW = 8  # unacknowledged events per device (the firmware's resend window)
BOOT = 1
SESSION = 1
TOKEN = "bench-token-0123456789abcdef"

# (kind, score, reasons) by event number modulo 20
EVENT_MIX = ([("rating", 5, [])] * 9 + [("rating", 4, [])] * 4 + [("rating", 3, [])] * 2
             + [("rating", 2, ["R1"]), ("rating", 1, ["R1", "R3"])]
             + [("unrated", 0, [])] * 2 + [("uninvited", 4, [])])
assert len(EVENT_MIX) == 20


def mix_counts(n):
    """{kind: count} of the first n events of one device."""
    out = {}
    for i in range(n):
        k = EVENT_MIX[i % 20][0]
        out[k] = out.get(k, 0) + 1
    return out


def device_key(i):
    return hashlib.sha256(b"hcp-bench-device-%d" % i).digest()


class LoadHall:
    def __init__(self, workdir, devices=100, events=1000, commit_window_ms=0.0, start_time=None):
        self.work = pathlib.Path(workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.n = devices
        self.per = events
        self.commit_window_ms = commit_window_ms
        self.db_path = self.work / "gw.db"
        self.byid = self.work / "by-id"
        self.http_port = free_port()
        self.masters = []
        self.slaves = []
        self.keys = [Key(device_key(i)) for i in range(devices)]
        self.ids = ["LD-%04d" % i for i in range(devices)]
        self.proc = None
        self.t_time = int(start_time or time.time())
        self.sent = [0] * devices  # events written (frames after the hello)
        self.acked = [0] * devices
        self.cpu_s = None

    # --- preparation ----------------------------------------------------------
    def invitation_id(self, i, k):
        return "INV-LD%04d-%d" % (i, k)

    def cases(self, i, k):
        base = "330100-2026-%04d%06d" % (i, k)
        return [{"projectNo": base}, {"projectNo": base + "-2"}] if k % 10 == 0 else [{"projectNo": base}]

    def events_of(self, i):
        """The event messages of device i, in order (without session/seq)."""
        out = []
        inv = 0
        for s in range(1, self.per + 1):
            kind, score, reasons = EVENT_MIX[(s - 1) % 20]
            if kind == "uninvited":
                invitation = ""
            else:
                inv += 1
                invitation = self.invitation_id(i, inv)
            out.append({"type": "event", "device_id": self.ids[i], "boot": BOOT, "event_seq": s,
                        "kind": kind, "score": score, "reasons": list(reasons),
                        "invitation": invitation, "time": self.t_time + s // 10, "uptime_ms": 1000 + s})
        return out

    def expected(self):
        """What the database must hold after every event is ACKed."""
        c = mix_counts(self.per)
        invited = c.get("rating", 0) + c.get("unrated", 0)
        extra = invited // 10  # invitations k = 10, 20, ... have two cases
        return {"events": self.n * self.per, "records": self.n * (invited + extra),
                "invitations_closed": self.n * invited}

    def setup(self):
        from gateway import tomlw
        from gateway.store import db

        self.byid.mkdir(exist_ok=True)
        for i in range(self.n):
            m, s = os.openpty()
            tty.setraw(s)  # before anything is written (docs/design.md §7)
            tty.setraw(m)
            os.set_blocking(m, False)
            os.symlink(os.ttyname(s), str(self.byid / ("dev%04d" % i)))
            self.masters.append(m)
            self.slaves.append(s)
        conn = db.open_db(str(self.db_path))
        now = time.time()
        invited = mix_counts(self.per)
        n_inv = invited.get("rating", 0) + invited.get("unrated", 0)
        conn.execute("BEGIN IMMEDIATE")
        for i in range(self.n):
            staff, window = "S%04d" % (1001 + i), "W%03d" % (i + 1)
            conn.execute("INSERT INTO devices (device_id, key, key_confirmed, first_seen) VALUES (?, ?, 1, ?)",
                         (self.ids[i], self.keys[i].raw, now))
            conn.execute("INSERT INTO bindings (device_id, staff_id, window, staff_name, bound_at)"
                         " VALUES (?, ?, ?, ?, ?)", (self.ids[i], staff, window, "测试%d" % i, now))
        # The INSERT of gateway.devices.invitations.Invitations.open, row for row, in
        # the order a hall opens them: every window's k-th invitation before
        # anyone's (k+1)-th (all windows work at once).
        conn.executemany(
            "INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(self.invitation_id(i, k), "W%03d" % (i + 1), self.ids[i], "S%04d" % (1001 + i),
              json.dumps(self.cases(i, k), ensure_ascii=False), 3600, now + k * 1e-3)
             for k in range(1, n_inv + 1) for i in range(self.n)])
        conn.execute("COMMIT")
        conn.close()
        doc = {
            "hall": {"id": "bench-hall", "areaCode": "330100", "deptCode": "D01"},
            "database": {"path": str(self.db_path)},
            "http": {"listen": "127.0.0.1:%d" % self.http_port, "token": TOKEN},
            "serial": {"ports": [str(self.byid / "*")], "reopen_max_s": 0.5},
            "device": {"heartbeat_s": 3600},
            "ingest": {"commit_window_ms": float(self.commit_window_ms)},
            # One target nobody listens on: every record gets its outbox row and
            # stays pending (the forwarder backs off), so ingest is measured alone.
            "upstream": [{"name": "prov", "kind": "http", "url": "http://127.0.0.1:%d/r" % free_port(),
                          "backoff_min_s": 30.0, "backoff_max_s": 60.0}],
        }
        self.conf = self.work / "hall.toml"
        write_private(self.conf, tomlw.dumps(doc))  # it holds the token
        self.frames = []
        for i in range(self.n):
            hello = M.encode({"type": "hello", "session": SESSION, "seq": 1, "device_id": self.ids[i],
                              "fw": "load", "board": "sim", "boot": BOOT, "journal_depth": 0,
                              "uptime_ms": 1000, "staff_id": "S%04d" % (1001 + i), "paired": 1},
                             self.keys[i])
            out = [bytes(hello)]
            for seq, msg in enumerate(self.events_of(i), 2):
                msg["session"], msg["seq"] = SESSION, seq
                out.append(bytes(M.encode(msg, self.keys[i])))
            self.frames.append(out)
        return self

    # --- the gateway process --------------------------------------------------
    def start_gateway(self, timeout=20.0):
        self.log = open(self.work / "gateway.log", "ab")
        self.proc = subprocess.Popen(hcp_argv() + ["gateway", "run", "--config", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=str(self.work),
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        api = Client("http://127.0.0.1:%d" % self.http_port, TOKEN, timeout=2)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited: %s" % self.tail())
            status, st = api.call("GET", "/api/status")
            if status == 200 and sum(1 for p in st.get("serial", []) if p.get("open")) >= self.n:
                return self
            time.sleep(0.1)
        raise RuntimeError("gateway did not open its %d ports: %s" % (self.n, self.tail()))

    def cpu(self):
        """CPU seconds (user + system) the gateway process has used."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self):
        return procstat.status_kb(self.proc.pid, "VmHWM") or 0

    def stop_gateway(self):
        stop_process(self.proc, 15)

    def tail(self, n=2000):
        try:
            return (self.work / "gateway.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self):
        self.stop_gateway()
        for fd in self.masters + self.slaves:
            try:
                os.close(fd)
            except OSError:
                pass
        self.masters, self.slaves = [], []

    # --- the load -------------------------------------------------------------
    def hello_all(self, timeout=10.0):
        """Each device says hello and waits for the gateway's answer (time, config)."""
        readers = [Reader(key_for=lambda fr, k=k: k) for k in self.keys]
        for i, m in enumerate(self.masters):
            os.write(m, self.frames[i][0])
        waiting = set(range(self.n))
        fd2i = {m: i for i, m in enumerate(self.masters)}
        end = time.monotonic() + timeout
        while waiting and time.monotonic() < end:
            ready, _, _ = select.select(self.masters, [], [], 0.05)
            for fd in ready:
                i = fd2i[fd]
                for msg in readers[i].feed(os.read(fd, 65536)):
                    if msg["type"] == "config":
                        waiting.discard(i)
        if waiting:
            raise RuntimeError("%d devices got no answer to hello: %s" % (len(waiting), self.tail()))
        self.readers = readers

    def stream(self, rate=0.0, deadline=None, progress=None):
        """Send every event (after hello_all); rate = events/s per device, 0 =
        as fast as the window allows. Returns timings: seconds, acked, and the
        press->ACK latencies (write of a frame -> read of the ACK naming it)."""
        n, masters, frames = self.n, self.masters, self.frames
        pos = [1] * n  # next frame index (0 is the hello)
        acked = self.acked
        sent_at = [dict() for _ in range(n)]
        lat = []
        fd2i = {m: i for i, m in enumerate(masters)}
        total = n * self.per
        done = 0
        t0 = time.monotonic()
        step = 1.0 / rate if rate else 0.0
        next_at = [t0 + i * step / n for i in range(n)]  # spread the devices over one period
        ready_set = list(range(n))
        cpu0 = self.cpu()
        last_report = t0
        poll = select.poll()
        for m in masters:
            poll.register(m, select.POLLIN)
        mono = time.monotonic
        while done < total:
            now = mono()
            if deadline is not None and deadline.over:
                break
            for i in ready_set:
                p = pos[i]
                last = len(frames[i])
                room = WINDOW - (p - 1 - acked[i])
                if p >= last or room <= 0:
                    continue
                if rate:
                    if now < next_at[i]:
                        continue
                    k = 1
                    next_at[i] += step
                else:
                    k = min(room, last - p)
                data = frames[i][p] if k == 1 else b"".join(frames[i][p:p + k])
                try:
                    w = os.write(masters[i], data)
                except BlockingIOError:
                    continue
                if w != len(data):  # a pty takes whole small writes; never seen short
                    raise RuntimeError("short write on a pty")
                t = mono()
                d = sent_at[i]
                for s in range(p, p + k):
                    d[s] = t  # frame index p = event_seq p (the hello is index 0)
                pos[i] = p + k
            if rate:
                wait_ms = max(0.0, min(next_at) - mono()) * 1000.0
                wait_ms = min(wait_ms, 5.0)
            else:
                wait_ms = 10.0
            events = poll.poll(wait_ms)
            now = mono()
            for fd, _ in events:
                i = fd2i[fd]
                for msg in self.readers[i].feed(os.read(fd, 65536)):
                    if msg["type"] != "ack":
                        continue
                    d = sent_at[i]
                    for _, sq in msg["ids"]:
                        t = d.pop(sq, None)
                        if t is not None:
                            lat.append(now - t)
                            acked[i] += 1
                            done += 1
            if progress and now - last_report > 2.0:
                last_report = now
                progress("  %d / %d events ACKed" % (done, total))
        dt = mono() - t0
        self.cpu_s = self.cpu() - cpu0
        return {"seconds": dt, "acked": done, "sent": sum(p - 1 for p in pos), "latencies": lat,
                "gateway_cpu_s": self.cpu_s}

    # --- after ----------------------------------------------------------------
    def check(self):
        """Counts in the gateway's database (after stop_gateway)."""
        conn = sqlite3.connect(str(self.db_path))
        try:
            ev = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            rec = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            closed = conn.execute("SELECT count(*) FROM invitations WHERE event_id IS NOT NULL").fetchone()[0]
        finally:
            conn.close()
        return {"events": ev, "records": rec, "invitations_closed": closed}


def pty_echo_rtt(count=2000, size=32, deadline=None):
    """The reference for press->ACK: a frame written to a pty master, echoed
    back by another process on the slave (raw mode, pyserial-free fd I/O),
    read on the master. Returns the round-trip times (s)."""
    m, s = os.openpty()
    tty.setraw(s)
    tty.setraw(m)
    name = os.ttyname(s)
    code = ("import os, sys, tty\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)\n"
            "tty.setraw(fd)\n"
            "os.write(1, b'r')\n"
            "while True:\n"
            "    b = os.read(fd, 4096)\n"
            "    if not b or b == b'q': break\n"
            "    os.write(fd, b)\n")
    child = subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE)
    try:
        child.stdout.read(1)
        os.close(s)
        frame = bytes([0x55] * (size - 1)) + b"\x00"
        out = []
        for _ in range(count):
            if deadline is not None and deadline.over:
                break
            t = time.perf_counter()
            os.write(m, frame)
            got = 0
            while got < size:
                got += len(os.read(m, 4096))
            out.append(time.perf_counter() - t)
        os.write(m, b"q")
        child.wait(5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(m)
    return out
