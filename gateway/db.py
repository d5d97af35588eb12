"""Opening the gateway database and migrating its schema.

The database is one SQLite file in WAL mode with `synchronous=FULL`: a commit
returns only after the WAL is fsync'd, which is what lets the gateway say
"durable" when it ACKs an event. Connections are in autocommit mode
(isolation_level=None) and every write names its transaction explicitly
(`BEGIN IMMEDIATE ... COMMIT`), so there is never an implicit one open.

Migrations are a list of (name, statements). Each is applied in one
transaction together with its row in `migrations`, so a crash leaves either
none or all of it. Add new ones at the end; never edit an applied one.
"""

import sqlite3
import time

from gateway import outbox
from gateway.errors import StorageError

MIGRATIONS = [
    ("0001-initial", [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # Every event a device sent, once (event_id UNIQUE absorbs retransmits).
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,       -- device_id:boot:event_seq
            device_id TEXT NOT NULL,
            boot INTEGER NOT NULL,
            event_seq INTEGER NOT NULL,
            kind TEXT NOT NULL,                  -- rating | unrated | uninvited
            score INTEGER NOT NULL,
            reasons TEXT NOT NULL DEFAULT '',    -- comma-separated codes
            invitation TEXT NOT NULL DEFAULT '',
            device_time INTEGER NOT NULL DEFAULT 0,
            uptime_ms INTEGER NOT NULL DEFAULT 0,
            press_time REAL,                     -- corrected time of the press (Unix s)
            received_at REAL NOT NULL,
            staff_id TEXT NOT NULL DEFAULT '',
            window TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX events_device ON events (device_id, id)",
        *outbox.SCHEMA,
    ]),
]


def connect(path, timeout=10.0):
    """A connection with the gateway's pragmas. Does not migrate."""
    try:
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as err:
        raise StorageError("cannot open database %s: %s" % (path, err)) from err
    return conn


def migrate(conn):
    """Apply the migrations not yet recorded; return the names applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, statements in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in statements:
                conn.execute(sql)
            conn.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def open_db(path):
    """Connect and migrate: what the gateway and the tools call."""
    conn = connect(path)
    try:
        migrate(conn)
    except sqlite3.Error as err:
        conn.close()
        raise StorageError("cannot migrate database %s: %s" % (path, err)) from err
    return conn


def next_session(conn):
    """Increment and return the gateway's persisted start counter (its frame
    session, docs/link.md)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'session'").fetchone()
        session = (int(row[0]) if row else 0) + 1
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('session', ?)", (str(session),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return session
