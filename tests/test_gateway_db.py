"""The gateway database: pragmas, recorded migrations, the session counter,
and the outbox's exactly-once queueing, on real SQLite files."""

import json
import sqlite3

from gateway import db, outbox


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
