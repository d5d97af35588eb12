"""The outbox: upstream records waiting for, or done with, delivery.

One row per (target, record): with two upstream targets (say an MQTT broker
and an HTTP endpoint) every record gets a row for each, delivered and
acknowledged independently. `key` is the record's idempotency key
(docs/link.md: eventId/caseIndex), UNIQUE per target, so a retransmitted
event can never queue the same record twice.

States: 0 pending, 1 delivered (upstream acknowledged: PUBACK / HTTP 2xx),
2 rejected (the upstream refused it for good, e.g. HTTP 4xx; kept with the
reason for an admin). The partial index on pending rows keeps "oldest
undelivered" fast however many delivered rows pile up (docs/design.md §7).

These functions run inside the caller's transaction: they never BEGIN or
COMMIT themselves.

Row ids only grow: `purge_delivered` never deletes the row with the largest
id, so SQLite never hands out an id again (INTEGER PRIMARY KEY reuses
max(id)+1). The forwarders rely on it: they read pending rows with a cursor
`id > after_id`, and writers are serialised, so what a reader sees committed
is always a prefix in id order.
"""

import time

from gateway.store.manyrows import insert_many

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
    insert_many(conn, "INSERT OR IGNORE INTO outbox (target, key, event_id, device_id, record, created_at)",
                6, rows)
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
    target or all. Every count comes from an index except the rejected one
    (a scan of the table: ~45 ms per 300k rows here), so a dashboard can call
    this under a large backlog."""
    now = time.time() if now is None else now
    if target:
        total = conn.execute("SELECT count(*) FROM outbox WHERE target = ?", (target,)).fetchone()[0]
        pending, oldest = conn.execute(
            "SELECT count(*), min(created_at) FROM outbox WHERE target = ? AND state = 0",
            (target,)).fetchone()
        # "+target": do not walk the (target, key) index row by row for this
        rejected = conn.execute("SELECT count(*) FROM outbox WHERE state = 2 AND +target = ?",
                                (target,)).fetchone()[0]
    else:
        total = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        pending, oldest = conn.execute(
            "SELECT count(*), min(created_at) FROM outbox WHERE state = 0").fetchone()
        rejected = conn.execute("SELECT count(*) FROM outbox WHERE state = 2").fetchone()[0]
    return {
        "pending": pending,
        "delivered": total - pending - rejected,
        "rejected": rejected,
        "oldest_pending_age_s": (now - oldest) if oldest is not None else 0.0,
    }


def purge_delivered(conn, older_than, target=None, limit=None):
    """Delete delivered rows delivered before `older_than` (Unix s), of one
    target or all, at most `limit` of them (keep each transaction short on a
    busy hall); return how many. The row with the largest id is always kept
    (module docstring: ids are never reused)."""
    where = "state = 1 AND delivered_at < ? AND id < (SELECT max(id) FROM outbox)"
    args = [older_than]
    if target is not None:
        where += " AND target = ?"
        args.append(target)
    if limit is not None:
        where = "id IN (SELECT id FROM outbox WHERE %s ORDER BY delivered_at LIMIT ?)" % where
        args.append(int(limit))
    cur = conn.execute("DELETE FROM outbox WHERE " + where, args)
    return cur.rowcount


def backlog(conn, target):
    """(pending count, created_at of the oldest pending row or None) for one
    target; "oldest" is by id, which the partial index answers at once."""
    count = conn.execute("SELECT count(*) FROM outbox WHERE target = ? AND state = 0",
                         (target,)).fetchone()[0]
    row = conn.execute("SELECT created_at FROM outbox WHERE target = ? AND state = 0"
                       " ORDER BY id LIMIT 1", (target,)).fetchone()
    return count, (row[0] if row else None)


def rejected(conn, target=None, limit=100):
    """Rows the upstream refused for good, newest first, for an admin:
    [(id, target, key, event_id, device_id, record_json, attempts, error), ...]."""
    where, args = ("WHERE state = 2 AND target = ?", [target]) if target else ("WHERE state = 2", [])
    return conn.execute(
        "SELECT id, target, key, event_id, device_id, record, attempts, error FROM outbox %s"
        " ORDER BY id DESC LIMIT ?" % where, args + [int(limit)]).fetchall()


def requeue(conn, ids):
    """An admin sends rejected rows again (after fixing the cause upstream).
    Returns how many went back to pending."""
    before = conn.total_changes
    conn.executemany("UPDATE outbox SET state = 0, error = NULL WHERE id = ? AND state = 2",
                     [(i,) for i in ids])
    return conn.total_changes - before
