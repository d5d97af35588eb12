"""The commit thread stores a batch with a few statements (gateway/store/commit.py
`Committer._events`); the outcome must be exactly that of storing its events
one by one, as the commit thread did before (the reference below, kept
verbatim): same events rows, same outbox rows, same invitations closed, same
counters, per device too. Random batches mix new events, resends (in the same
batch and across batches), second answers to one invitation, another
device's invitation, unknown invitations, uninvited presses and a poison
invitation row."""

import json
import logging
import random
import sqlite3

from gateway import records
from gateway.config import Hall
from gateway.devices.registry import Device
from gateway.store import commit, db


def _old_event(self, conn, item, counts, out):
    """The per-event path of the commit thread before batching (reference)."""
    m = item.msg
    eid = records.event_id(m["device_id"], m["boot"], m["event_seq"])
    row = None
    if m["kind"] != "uninvited":
        row = conn.execute("SELECT device_id, staff_id, window, cases, event_id FROM invitations"
                           " WHERE id = ?", (m["invitation"],)).fetchone()
        if row is not None and row[0] != m["device_id"]:
            row = None
    if row is not None:
        staff_id, window = row[1], row[2]
    else:
        binding = item.dev.binding or {}
        staff_id, window = binding.get("staff_id", ""), binding.get("window", "")
    cur = conn.execute(
        "INSERT OR IGNORE INTO events (event_id, device_id, boot, event_seq, kind, score, reasons,"
        " invitation, device_time, uptime_ms, press_time, received_at, staff_id, window, time_source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (eid, m["device_id"], m["boot"], m["event_seq"], m["kind"], m["score"],
         ",".join(m["reasons"]), m["invitation"], m["time"], m["uptime_ms"], item.press_time,
         item.received_at, staff_id, window, item.time_source))
    if cur.rowcount == 0:
        counts["duplicates"] += 1
        item.dev.duplicates += 1
        return
    counts["events"] += 1
    item.dev.events += 1
    if m["kind"] == "uninvited":
        counts["uninvited"] += 1
        return
    if row is None:
        counts["orphans"] += 1
        return
    if row[4] is not None:
        counts["late"] += 1
        return
    ev = {"event_id": eid, "device_id": m["device_id"], "kind": m["kind"], "score": m["score"],
          "reasons": ",".join(m["reasons"]), "press_time": item.press_time}
    try:
        inv = {"cases": json.loads(row[3]), "staff_id": staff_id, "window": window}
        built = records.build(ev, inv, self.hall)
    except Exception:
        counts["poison"] += 1
        return
    conn.execute("UPDATE invitations SET state = ?, event_id = ?, closed_at = ? WHERE id = ?",
                 ("rated" if m["kind"] == "rating" else "unrated", eid, item.received_at, m["invitation"]))
    counts["records"] += len(built)
    for key, rec in built:
        text = records.dumps(rec)
        for t in self.targets:
            out.append((t, key, eid, m["device_id"], text, item.received_at))


class OldCommitter(commit.Committer):
    def _events(self, conn, events, counts, out):
        for item in events:
            _old_event(self, conn, item, counts, out)


def _prepare(path, n_dev, n_inv):
    conn = db.open_db(path)
    conn.execute("BEGIN IMMEDIATE")
    for d in range(n_dev):
        conn.execute("INSERT INTO devices (device_id) VALUES (?)", ("D%d" % d,))
    for k in range(n_inv):
        d = k % n_dev
        cases = "not json" if k == 7 else json.dumps([{"projectNo": "P%d" % k}] + ([{"projectNo": "P%d-b" % k, "x": "y"}] if k % 3 == 0 else []))
        conn.execute("INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s, created_at)"
                     " VALUES (?, ?, ?, ?, ?, 10, 1.0)", ("I%d" % k, "W%d" % d, "D%d" % d, "S%d" % d, cases))
    conn.execute("COMMIT")
    return conn


def _script(seed, n_dev=4, n_inv=40, n_events=300):
    rng = random.Random(seed)
    seqs = [0] * n_dev
    sent = []
    out = []
    for _ in range(n_events):
        r = rng.random()
        if sent and r < 0.2:
            out.append(rng.choice(sent))  # a resend
            continue
        d = rng.randrange(n_dev)
        seqs[d] += 1
        kind = rng.choice(["rating", "rating", "rating", "unrated", "uninvited"])
        if kind == "uninvited":
            inv = ""
        elif rng.random() < 0.1:
            inv = "NOPE-%d" % rng.randrange(5)  # unknown
        else:
            inv = "I%d" % rng.randrange(n_inv)  # maybe another device's, maybe answered already
        score = 0 if kind == "unrated" else rng.randint(1, 5)
        reasons = ["R1"] if kind == "rating" and score <= 2 else []
        ev = ("D%d" % d, rng.choice([1, 2]), seqs[d], kind, score, reasons, inv, rng.choice([0, 1795000000 + seqs[d]]))
        sent.append(ev)
        out.append(ev)
    cuts = sorted(rng.sample(range(1, len(out)), 12))
    return out, cuts


def _run(cls, path, script, cuts, n_dev):
    conn = _prepare(path, n_dev, 40)
    devs = [Device("D%d" % d) for d in range(n_dev)]
    for d, dev in enumerate(devs):
        dev.binding = {"staff_id": "S%d" % d, "window": "W%d" % d} if d % 2 == 0 else None
    c = cls(conn, ["a", "b"], Hall(id="h", areaCode="330100", deptCode="D1"), lambda dev, ids: None)
    items = []
    for i, (dev_id, boot, seq, kind, score, reasons, inv, t) in enumerate(script):
        m = {"type": "event", "session": 1, "seq": i + 2, "device_id": dev_id, "boot": boot, "event_seq": seq,
             "kind": kind, "score": score, "reasons": list(reasons), "invitation": inv, "time": t,
             "uptime_ms": seq * 10}
        items.append(commit.Event(m, devs[int(dev_id[1:])], 1000.0 + i, float(t or 999), "device"))
    for a, b in zip([0] + cuts, cuts + [len(items)], strict=True):
        c._commit(items[a:b])
    conn.close()
    ro = sqlite3.connect(path)
    state = {
        "events": ro.execute("SELECT event_id, device_id, boot, event_seq, kind, score, reasons, invitation,"
                             " device_time, uptime_ms, press_time, received_at, staff_id, window, time_source"
                             " FROM events ORDER BY id").fetchall(),
        "outbox": ro.execute("SELECT target, key, event_id, device_id, record, created_at, state FROM outbox"
                             " ORDER BY id").fetchall(),
        "invitations": ro.execute("SELECT id, state, event_id, closed_at FROM invitations ORDER BY id").fetchall(),
        "stats": c.stats,
        "devices": [(d.events, d.duplicates) for d in devs],
    }
    ro.close()
    return state


def test_batched_commit_stores_what_one_by_one_stored(tmp_path, caplog):
    caplog.set_level(logging.CRITICAL, logger="hcp.gateway.store.commit")
    for seed in range(12):
        script, cuts = _script(seed)
        old = _run(OldCommitter, str(tmp_path / ("old%d.db" % seed)), script, cuts, 4)
        new = _run(commit.Committer, str(tmp_path / ("new%d.db" % seed)), script, cuts, 4)
        assert new == old, seed
        # the scripts do exercise every branch
        s = new["stats"]
        assert s["duplicates"] and s["late"] and s["orphans"] and s["uninvited"] and s["records"], s
    assert any(_run(commit.Committer, str(tmp_path / "p.db"), *(_script(s)), 4)["stats"]["poison"]
               for s in range(3))
