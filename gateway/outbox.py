"""The outbox: upstream records waiting for, or done with, delivery.

One row per (target, record): with two upstream targets (say an MQTT broker
and an HTTP endpoint) every record gets a row for each, delivered and
acknowledged independently. `key` is the record's idempotency key
(docs/link.md: eventId/caseIndex), UNIQUE per target, so a retransmitted
event can never queue the same record twice.

States: 0 pending, 1 delivered (upstream acknowledged: PUBACK / HTTP 2xx),
2 rejected (the upstream refused it for good, e.g. HTTP 4xx; kept with the
reason for an admin). The partial index on pending rows keeps "oldest
undelivered" fast however many delivered rows pile up (MEASURED.md).

These functions run inside the caller's transaction: they never BEGIN or
COMMIT themselves.
"""

import time

PENDING = 0
DELIVERED = 1
REJECTED = 2

SCHEMA = [
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,              -- name of the upstream target in the config
        key TEXT NOT NULL,                 -- idempotency key: eventId/caseIndex
        event_id TEXT NOT NULL,            -- device_id:boot:event_seq
        device_id TEXT NOT NULL,
        record TEXT NOT NULL,              -- the upstream record, JSON
        created_at REAL NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 delivered, 2 rejected
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_at REAL,
        error TEXT,
        UNIQUE (target, key)
    )""",
    "CREATE INDEX outbox_pending ON outbox (target, id) WHERE state = 0",
    "CREATE INDEX outbox_done ON outbox (delivered_at) WHERE state = 1",
]


def add(conn, rows):
    """Queue records. rows: iterable of (target, key, event_id, device_id,
    record_json, created_at). Rows whose (target, key) exist are ignored.
    Returns the number of rows actually added."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (target, key, event_id, device_id, record, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)", rows)
    return conn.total_changes - before


def pending(conn, target, limit, after_id=0):
    """Oldest pending rows of `target` with id > after_id:
    [(id, key, device_id, record_json), ...] in id order."""
    return conn.execute(
        "SELECT id, key, device_id, record FROM outbox WHERE target = ? AND state = 0 AND id > ?"
        " ORDER BY id LIMIT ?", (target, after_id, limit)).fetchall()


def mark_delivered(conn, ids, when=None):
    when = time.time() if when is None else when
    conn.executemany("UPDATE outbox SET state = 1, delivered_at = ?, attempts = attempts + 1"
                     " WHERE id = ? AND state = 0", [(when, i) for i in ids])


def mark_rejected(conn, row_id, reason):
    conn.execute("UPDATE outbox SET state = 2, error = ?, attempts = attempts + 1 WHERE id = ?",
                 (reason, row_id))


def note_failure(conn, ids, reason):
    """A delivery attempt failed and will be retried."""
    conn.executemany("UPDATE outbox SET attempts = attempts + 1, error = ? WHERE id = ?",
                     [(reason, i) for i in ids])


def stats(conn, target=None, now=None):
    """{"pending", "oldest_pending_age_s", "delivered", "rejected"} for one
    target or all."""
    now = time.time() if now is None else now
    where, args = ("WHERE target = ?", (target,)) if target else ("", ())
    counts = dict(conn.execute("SELECT state, count(*) FROM outbox %s GROUP BY state" % where, args).fetchall())
    if target:
        oldest = conn.execute("SELECT min(created_at) FROM outbox WHERE target = ? AND state = 0",
                              (target,)).fetchone()[0]
    else:
        oldest = conn.execute("SELECT min(created_at) FROM outbox WHERE state = 0").fetchone()[0]
    return {
        "pending": counts.get(PENDING, 0),
        "delivered": counts.get(DELIVERED, 0),
        "rejected": counts.get(REJECTED, 0),
        "oldest_pending_age_s": (now - oldest) if oldest is not None else 0.0,
    }


def purge_delivered(conn, older_than):
    """Delete delivered rows delivered before `older_than` (Unix s); return how many."""
    cur = conn.execute("DELETE FROM outbox WHERE state = 1 AND delivered_at < ?", (older_than,))
    return cur.rowcount
