"""The gateway database: pragmas, recorded migrations, the session counter,
and the outbox's exactly-once queueing, on real SQLite files."""

import json
import sqlite3

from gateway.devices import invitations
from gateway.store import db, outbox


def test_open_migrates_once_and_records_it(tmp_path):
    path = tmp_path / "hall.db"
    conn = db.open_db(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    names = [r[0] for r in conn.execute("SELECT name FROM migrations")]
    assert names == [m[0] for m in db.MIGRATIONS]
    conn.close()
    conn = db.open_db(path)  # second open applies nothing
    assert db.migrate(conn) == []


def test_failed_migration_leaves_nothing(tmp_path, monkeypatch):
    conn = db.open_db(tmp_path / "hall.db")
    monkeypatch.setattr(db, "MIGRATIONS", db.MIGRATIONS + [("9999-bad", ["CREATE TABLE t (x)", "NOT SQL"])])
    try:
        db.migrate(conn)
        raise AssertionError("bad migration applied")
    except sqlite3.Error:
        pass
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM migrations WHERE name = '9999-bad'").fetchone()[0] == 0


def test_open_invitations_indexed_by_time_after_migration(tmp_path, monkeypatch):
    """0005 re-keys invitations_open on a database made before it: the open
    rows stay indexed (by created_at), closing one leaves the index, and the
    expiry sweep reads the index, not the table."""
    path = tmp_path / "hall.db"
    with monkeypatch.context() as m:
        m.setattr(db, "MIGRATIONS", [x for x in db.MIGRATIONS if x[0] < "0005"])
        conn = db.open_db(path)
    conn.executemany("INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s, created_at)"
                     " VALUES (?, 'W1', 'D1', 'S1', '[]', 60, ?)", [("I%d" % i, 100.0 + i) for i in range(5)])
    conn.close()
    conn = db.open_db(path)
    assert "0005-invitations-open-by-time" in {r[0] for r in conn.execute("SELECT name FROM migrations")}
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'invitations_open'").fetchone()[0]
    assert "(created_at)" in sql and "state = 'open'" in sql
    conn.execute("UPDATE invitations SET state = 'rated' WHERE id = 'I2'")
    open_ids = [r[0] for r in conn.execute("SELECT id FROM invitations INDEXED BY invitations_open"
                                           " WHERE state = 'open' ORDER BY created_at")]
    assert open_ids == ["I0", "I1", "I3", "I4"]
    plan = conn.execute("EXPLAIN QUERY PLAN UPDATE invitations SET state = 'expired', closed_at = 1"
                        " WHERE state = 'open' AND event_id IS NULL AND created_at + timeout_s + 60 < 5").fetchall()
    assert any("invitations_open" in row[-1] for row in plan), plan


def test_todays_invitations_read_through_the_time_index(tmp_path):
    conn = db.open_db(tmp_path / "hall.db")
    conn.executemany("INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s, created_at,"
                     " state) VALUES (?, 'W1', 'D1', 'S1', '[]', 60, ?, ?)",
                     [("I%d" % i, 100.0 + i, ("open", "expired", "rated")[i % 3]) for i in range(9)])
    assert invitations.by_state(conn, 104.0, 200.0) == {"open": 1, "expired": 2, "rated": 2}
    assert invitations.by_state(conn, 101.0, 104.0) == {"expired": 1, "rated": 1, "open": 1}
    plan = conn.execute("EXPLAIN QUERY PLAN " + invitations.BY_STATE, (104.0, 200.0)).fetchall()
    assert any("invitations_created" in row[-1] for row in plan), plan


def test_session_counter_persists(tmp_path):
    path = tmp_path / "hall.db"
    conn = db.open_db(path)
    assert db.next_session(conn) == 1
    assert db.next_session(conn) == 2
    conn.close()
    assert db.next_session(db.open_db(path)) == 3


def test_outbox_queues_each_record_once_per_target(tmp_path):
    conn = db.open_db(tmp_path / "hall.db")
    rec = json.dumps({"projectNo": "P1", "satisfaction": 5})
    rows = [(t, "EV-1:3:7/1", "EV-1:3:7", "EV-1", rec, 100.0) for t in ("mqtt", "http")]
    conn.execute("BEGIN IMMEDIATE")
    assert outbox.add(conn, rows) == 2
    assert outbox.add(conn, rows) == 0  # a retransmitted event queues nothing new
    conn.execute("COMMIT")
    got = outbox.pending(conn, "mqtt", 10)
    assert [(r[1], r[2]) for r in got] == [("EV-1:3:7/1", "EV-1")]
    conn.execute("BEGIN IMMEDIATE")
    outbox.mark_delivered(conn, [got[0][0]], when=200.0)
    conn.execute("COMMIT")
    assert outbox.pending(conn, "mqtt", 10) == []
    assert len(outbox.pending(conn, "http", 10)) == 1
    s = outbox.stats(conn, "http", now=130.0)
    assert s["pending"] == 1 and s["oldest_pending_age_s"] == 30.0
    assert outbox.purge_delivered(conn, older_than=300.0) == 1
    assert outbox.stats(conn)["delivered"] == 0


def test_outbox_backlog_rejections_requeue_and_purge(tmp_path):
    conn = db.open_db(tmp_path / "hall.db")
    rows = [(t, "EV-1:1:%d/1" % i, "EV-1:1:%d" % i, "EV-1", "{}", 100.0 + i)
            for i in range(1, 7) for t in ("a", "b")]
    conn.execute("BEGIN IMMEDIATE")
    assert outbox.add(conn, rows) == 12
    ids = [r[0] for r in outbox.pending(conn, "a", 10)]
    outbox.mark_delivered(conn, ids[:3], when=50.0)
    outbox.mark_rejected(conn, ids[3], "HTTP 422: bad projectNo")
    conn.execute("COMMIT")
    assert outbox.backlog(conn, "a") == (2, 105.0)
    assert outbox.stats(conn, "a", now=110.0) == {"pending": 2, "delivered": 3, "rejected": 1,
                                                   "oldest_pending_age_s": 5.0}
    assert outbox.stats(conn)["pending"] == 8
    rej = outbox.rejected(conn, "a")
    assert [(r[0], r[2], r[7]) for r in rej] == [(ids[3], "EV-1:1:4/1", "HTTP 422: bad projectNo")]
    conn.execute("BEGIN IMMEDIATE")
    assert outbox.requeue(conn, [ids[3], ids[0]]) == 1  # only rejected rows go back
    assert outbox.purge_delivered(conn, older_than=60.0, target="b") == 0
    assert outbox.purge_delivered(conn, older_than=60.0, target="a", limit=2) == 2
    assert outbox.purge_delivered(conn, older_than=60.0) == 1
    conn.execute("COMMIT")
    assert outbox.backlog(conn, "a") == (3, 104.0)


def test_purge_never_frees_the_largest_id(tmp_path):
    """Forwarders read with a cursor (id > last seen): an id must never be
    handed out twice, so the newest row survives any purge."""
    conn = db.open_db(tmp_path / "hall.db")
    conn.execute("BEGIN IMMEDIATE")
    outbox.add(conn, [("a", "k%d" % i, "e%d" % i, "d", "{}", 1.0) for i in range(3)])
    outbox.mark_delivered(conn, [1, 2, 3], when=1.0)
    assert outbox.purge_delivered(conn, older_than=10.0) == 2
    outbox.add(conn, [("a", "k9", "e9", "d", "{}", 2.0)])
    conn.execute("COMMIT")
    assert [r[0] for r in outbox.pending(conn, "a", 10)] == [4]
