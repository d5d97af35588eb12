"""Peer benchmark: our durable ingest beside ThingsBoard IoT Gateway's SQLite
event storage (PyPI `thingsboard-gateway`, the optional `bench` extra), both
driven the same way in the same run.

Three figures per side:
- **time to durable**: from handing an event over to the moment it is in a
  committed SQLite row. Ours: `Committer.put_event()` -> the ACK callback,
  which runs only after a `synchronous=FULL` commit. Theirs: `put()` -> the row
  is visible to another connection (their writer thread commits batches every
  0.1 s at `synchronous=NORMAL`, which is not power-loss safe);
- **events/s** through that path;
- **duplicates** when events are put and drained concurrently (their
  read/delete-by-max-id storage vs our outbox `pending` + `mark_delivered`).

Both sides get the same stream: `events` events in bursts of `burst` every
millisecond, on one producer thread.
"""

import json
import logging
import os
import sqlite3
import tempfile
import threading
import time

from bench.common import Deadline, percentile, result

DEFAULTS = {"events": 20000, "burst": 10, "drain_events": 20000, "seconds": 100}


class _TraceLogger(logging.Logger):
    # Their storage calls logger.trace(), which only their own logger class has.
    def trace(self, *args, **kwargs):
        pass


def _producer(n, burst, put):
    """Put n events in bursts, one burst per ms; return the put times."""
    t_put = [0.0] * n
    i = 0
    next_t = time.perf_counter()
    while i < n:
        for _ in range(min(burst, n - i)):
            t_put[i] = time.perf_counter()
            put(i)
            i += 1
        next_t += 0.001
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return t_put


# -- theirs ---------------------------------------------------------------------
def _tb_storage(workdir):
    from thingsboard_gateway.storage.sqlite.sqlite_event_storage import SQLiteEventStorage

    cfg = {"data_file_path": os.path.join(workdir, "data.db"), "messages_ttl_check_in_hours": 1,
           "messages_ttl_in_days": 7, "max_read_records_count": 1000, "writing_batch_size": 1000}
    log = _TraceLogger("tb-storage")
    log.setLevel(logging.ERROR)
    return SQLiteEventStorage(cfg, log, threading.Event()), os.path.join(workdir, "data.db")


def tb_latency(workdir, n, burst, deadline):
    storage, path = _tb_storage(workdir)
    seen = [0.0] * n
    done = threading.Event()

    def poll():
        conn = sqlite3.connect(path)
        last = 0
        while last < n and not deadline.over:
            try:
                top = conn.execute("SELECT max(id) FROM messages").fetchone()[0] or 0
            except sqlite3.OperationalError:
                top = last
            now = time.perf_counter()
            for k in range(last, min(top, n)):
                seen[k] = now  # row ids run 1..n in put order on a fresh file
            last = max(last, top)
            time.sleep(0.0005)
        done.set()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t0 = time.perf_counter()
    t_put = _producer(n, burst, lambda i: storage.put(json.dumps({"id": i, "score": 5})))
    done.wait(max(1.0, deadline.left))
    t1 = max(seen) if all(seen) else time.perf_counter()
    storage.stop()
    lat = [(seen[i] - t_put[i]) * 1000 for i in range(n) if seen[i]]
    return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "durable": len(lat),
            "events_per_s": len(lat) / (t1 - t0), "synchronous": "NORMAL"}


def tb_duplicates(workdir, n, burst, deadline):
    storage, _ = _tb_storage(workdir)
    got = []
    stop = threading.Event()

    def drain():
        idle_since = None
        while not deadline.over:
            pack = storage.get_event_pack()
            if pack:
                got.extend(json.loads(m)["id"] for m in pack)
                storage.event_pack_processing_done()
                idle_since = None
            else:
                if stop.is_set():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.0:
                        return
                time.sleep(0.01)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    _producer(n, burst, lambda i: storage.put(json.dumps({"id": i})))
    stop.set()
    t.join(max(1.0, deadline.left))
    storage.stop()
    return {"delivered": len(got), "unique": len(set(got)), "duplicates": len(got) - len(set(got)),
            "missing": n - len(set(got))}


# -- ours -----------------------------------------------------------------------
class _Dev:
    """What the committer needs of a device link."""

    def __init__(self, device_id, staff_id, window):
        self.device_id = device_id
        self.binding = {"staff_id": staff_id, "window": window}
        self.events = 0
        self.duplicates = 0


def _our_committer(workdir, n, on_ack):
    from gateway.config import Hall
    from gateway.store import commit, db

    path = os.path.join(workdir, "ours.db")
    conn = db.open_db(path)
    dev = _Dev("EV-BENCH", "S1", "A01")
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s, created_at)"
        " VALUES (?, 'A01', ?, 'S1', ?, 10, ?)",
        [("I%d" % i, dev.device_id, json.dumps([{"projectNo": "P%d" % i}]), now) for i in range(n)])
    conn.execute("COMMIT")
    hall = Hall(id="bench", areaCode="330100", deptCode="001")
    c = commit.Committer(conn, ["up"], hall, on_ack)
    c.start()
    return c, dev, path


def _event(dev, i):
    from gateway.store import commit

    msg = {"type": "event", "device_id": dev.device_id, "boot": 1, "event_seq": i + 1, "kind": "rating",
           "score": 5, "reasons": [], "invitation": "I%d" % i, "time": 0, "uptime_ms": i}
    now = time.time()
    return commit.Event(msg, dev, now, now, "gateway")


def ours_latency(workdir, n, burst, deadline):
    acked = [0.0] * n
    count = [0]
    done = threading.Event()

    def on_ack(dev, ids):
        now = time.perf_counter()
        for _, seq in ids:
            acked[seq - 1] = now
        count[0] += len(ids)
        if count[0] >= n:
            done.set()

    c, dev, _ = _our_committer(workdir, n, on_ack)
    events = [_event(dev, i) for i in range(n)]
    t0 = time.perf_counter()
    t_put = _producer(n, burst, lambda i: c.put_event(events[i]))
    done.wait(max(1.0, deadline.left))
    t1 = max(acked) if all(acked) else time.perf_counter()
    c.stop()
    lat = [(acked[i] - t_put[i]) * 1000 for i in range(n) if acked[i]]
    return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "durable": len(lat),
            "events_per_s": len(lat) / (t1 - t0), "synchronous": "FULL"}


def ours_duplicates(workdir, n, burst, deadline):
    from gateway.store import db, outbox

    acked = [0]
    c, dev, path = _our_committer(workdir, n, lambda d, ids: acked.__setitem__(0, acked[0] + len(ids)))
    got = []
    stop = threading.Event()

    def drain():
        conn = db.connect(path)
        idle_since = None
        while not deadline.over:
            rows = outbox.pending(conn, "up", 1000)
            if rows:
                got.extend(json.loads(r[3])["projectNo"] for r in rows)
                conn.execute("BEGIN IMMEDIATE")
                outbox.mark_delivered(conn, [r[0] for r in rows])
                conn.execute("COMMIT")
                idle_since = None
            else:
                if stop.is_set() and acked[0] >= n:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.0:
                        return
                time.sleep(0.01)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    events = [_event(dev, i) for i in range(n)]
    _producer(n, burst, lambda i: c.put_event(events[i]))
    stop.set()
    t.join(max(1.0, deadline.left))
    c.stop()
    return {"delivered": len(got), "unique": len(set(got)), "duplicates": len(got) - len(set(got)),
            "missing": n - len(set(got))}


def run(progress=None, **params):
    p = dict(DEFAULTS)
    unknown = set(params) - set(p)
    if unknown:
        raise TypeError("unknown parameter(s): %s" % ", ".join(sorted(unknown)))
    p.update(params)
    say = progress or (lambda msg: None)
    try:
        import thingsboard_gateway  # noqa: F401
    except ImportError as err:
        raise RuntimeError("the peer is not installed: pip install -e '.[bench]'") from err
    logging.getLogger("tb-storage").setLevel(logging.ERROR)
    deadline = Deadline(p["seconds"])
    out = {}
    with tempfile.TemporaryDirectory(prefix="hcp-bench-peer-") as work:
        for name, fn, n in (("ours_latency", ours_latency, p["events"]),
                            ("theirs_latency", tb_latency, p["events"]),
                            ("ours_dups", ours_duplicates, p["drain_events"]),
                            ("theirs_dups", tb_duplicates, p["drain_events"])):
            say("peer: %s (%d events)" % (name, n))
            d = os.path.join(work, name)
            os.mkdir(d)
            out[name] = fn(d, n, p["burst"], deadline)
    ours, theirs = out["ours_latency"], out["theirs_latency"]
    return result(
        "peer", ours["p50_ms"], "ms (p50 hand-over -> durable)", theirs["p50_ms"], p,
        target="ours >= 10x sooner than theirs; 0 duplicates", higher_is_better=False,
        ours=ours, theirs=theirs, ours_concurrent=out["ours_dups"], theirs_concurrent=out["theirs_dups"])
