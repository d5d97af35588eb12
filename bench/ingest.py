"""Durable ingest (docs/design.md §5: >= 30,000 events/s): 100 pty devices
streaming rating events at `hcp gateway run`; events per second from the
first frame written to the last event ACKed (each ACK comes after the FULL
commit of its event, its invitation closed and its records in the outbox).

Load: bench/load.py (per-device keys, tagged frames, 8 in flight per device,
the event mix and how the invitations were made are described there).
Reference, same run: the rows the gateway wrote (events + outbox rows), read
back and inserted with raw sqlite3 `executemany` into a fresh database of the
same schema (same indexes), WAL, `synchronous=FULL`, `batch` events and their
outbox rows per transaction; events per second. ptys ignore the baud rate: a
real 115200 line carries <= 360 frames/s one way, so this measures software.

    hcp bench ingest [--json] [-p devices=100] [-p events=1500]
"""

import os
import shutil
import sqlite3
import tempfile
import time

from bench.common import Deadline, result
from bench.load import EVENT_MIX, LoadHall

DEFAULTS = {"devices": 100, "events": 1500, "batch": 1000, "seconds": 110, "commit_window_ms": 0.0}


def raw_reference(src_db, workdir, batch=1000):
    """Insert the gateway's events and outbox rows into a fresh database of
    the same schema with plain executemany, `batch` events per transaction."""
    from gateway.store import db

    src = sqlite3.connect(src_db)
    ev_cols = [r[1] for r in src.execute("PRAGMA table_info(events)") if r[1] != "id"]
    ob_cols = [r[1] for r in src.execute("PRAGMA table_info(outbox)") if r[1] != "id"]
    events = src.execute("SELECT %s FROM events ORDER BY id" % ", ".join(ev_cols)).fetchall()
    rows = src.execute("SELECT %s FROM outbox ORDER BY id" % ", ".join(ob_cols)).fetchall()
    src.close()
    by_event = {}
    eid_at = ob_cols.index("event_id")
    for r in rows:
        by_event.setdefault(r[eid_at], []).append(r)
    chunks = []
    for i in range(0, len(events), batch):
        evs = events[i:i + batch]
        obs = [r for e in evs for r in by_event.get(e[0], ())]
        chunks.append((evs, obs))
    path = os.path.join(workdir, "raw.db")
    conn = db.open_db(path)
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    ins_ev = "INSERT INTO events (%s) VALUES (%s)" % (", ".join(ev_cols), ", ".join("?" * len(ev_cols)))
    ins_ob = "INSERT INTO outbox (%s) VALUES (%s)" % (", ".join(ob_cols), ", ".join("?" * len(ob_cols)))
    t0 = time.perf_counter()
    for evs, obs in chunks:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(ins_ev, evs)
        if obs:
            conn.executemany(ins_ob, obs)
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return {"events": len(events), "outbox_rows": len(rows), "seconds": dt,
            "events_per_s": len(events) / dt if dt else 0.0, "synchronous": {2: "FULL", 3: "EXTRA"}.get(sync, sync)}


def run(progress=None, devices=DEFAULTS["devices"], events=DEFAULTS["events"], batch=DEFAULTS["batch"],
        seconds=DEFAULTS["seconds"], commit_window_ms=DEFAULTS["commit_window_ms"], keep=0):
    say = progress or (lambda m: None)
    deadline = Deadline(seconds)
    work = tempfile.mkdtemp(prefix="hcp-bench-ingest-")
    hall = LoadHall(work, devices=devices, events=events, commit_window_ms=commit_window_ms)
    try:
        say("preparing %d devices x %d events" % (devices, events))
        hall.setup()
        hall.start_gateway()
        hall.hello_all()
        say("streaming")
        st = hall.stream(rate=0, deadline=deadline, progress=say)
        rss = hall.rss_kb()
        hall.stop_gateway()
        got = hall.check()
        want = hall.expected()
        if st["acked"] != devices * events or got != want:
            raise RuntimeError("ingest lost or misplaced something: acked %d of %d; database %s, expected %s\n%s"
                               % (st["acked"], devices * events, got, want, hall.tail()))
        say("reference: raw sqlite3 inserts of the same rows")
        ref = raw_reference(str(hall.db_path), work, batch=batch)
    finally:
        hall.close()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    rate = st["acked"] / st["seconds"]
    mix = {}
    for k, s, _ in EVENT_MIX:
        key = "差评" if k == "rating" and s <= 2 else k
        mix[key] = mix.get(key, 0) + 1
    return result("ingest", rate, "events/s", ref["events_per_s"],
                  {"devices": devices, "events_per_device": events, "in_flight_per_device": 8,
                   "transport": "pty (baud rate ignored)", "upstream_targets": 1,
                   "event_mix_per_20": mix, "reference_batch": batch,
                   "commit_window_ms": commit_window_ms},
                  target=30000, seconds=st["seconds"], events=st["acked"], records=got["records"],
                  gateway_cpu_s=st["gateway_cpu_s"],
                  gateway_cpu_us_per_event=1e6 * st["gateway_cpu_s"] / max(1, st["acked"]),
                  gateway_peak_rss_mb=rss / 1024.0,
                  reference_detail=ref)
