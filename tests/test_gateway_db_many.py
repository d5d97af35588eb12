"""The few-statement writes of the commit path against what they replace:
gateway.store.manyrows.insert_many / update_many against executemany (same rows, ids,
conflicts, total_changes, in any batch size), and the packed invitation
lookup of gateway.store.commit against a plain SELECT (odd texts, NULLs, and the
BLOB a JSON array cannot hold)."""

import random
import sqlite3

import pytest

from gateway.store import commit, db, manyrows

ODD = ["", "a", "引号\"\\/", "\x00nul\x00", "\n\t\r\b\f", "\u2028\u2029", "😀𝄞", "{\"x\": [1]}", "'; DROP", "x" * 3000]


def _two(tmp_path):
    out = []
    for name in ("a.db", "b.db"):
        conn = db.open_db(str(tmp_path / name))
        out.append(conn)
    return out


def _state(conn):
    return (conn.execute("SELECT * FROM outbox ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM invitations ORDER BY rowid").fetchall())


@pytest.mark.parametrize("seed", range(6))
def test_insert_many_is_executemany(tmp_path, seed):
    rng = random.Random(seed)
    a, b = _two(tmp_path)
    head = "INSERT OR IGNORE INTO outbox (target, key, event_id, device_id, record, created_at)"
    for n in [0, 1, 2, 3, 255, 256, 257, 511, 700] + [rng.randrange(1, 900) for _ in range(4)]:
        # keys repeat within and across batches: OR IGNORE keeps the first
        rows = [(rng.choice("ab"), "k%d" % rng.randrange(1500), "e", rng.choice(ODD), rng.choice(ODD),
                 rng.choice([1.0, 1795000000.123456, 0.1 + 0.2, rng.random()])) for _ in range(n)]
        for conn in (a, b):
            conn.execute("BEGIN IMMEDIATE")
        before = a.total_changes, b.total_changes
        a.executemany(head + " VALUES (?, ?, ?, ?, ?, ?)", rows)
        assert manyrows.insert_many(b, head, 6, rows) == n
        assert a.total_changes - before[0] == b.total_changes - before[1]
        for conn in (a, b):
            conn.execute("COMMIT")
        assert _state(a) == _state(b)


def test_insert_many_refuses_a_row_of_the_wrong_width(tmp_path):
    a, _ = _two(tmp_path)
    with pytest.raises(sqlite3.ProgrammingError):
        manyrows.insert_many(a, "INSERT INTO meta (key, value)", 2, [("a", "1"), ("b", "2", "3"), ("c",)])
    assert a.execute("SELECT count(*) FROM meta").fetchone()[0] == 0


def _invitations(conn, n):
    conn.execute("PRAGMA synchronous = OFF")  # a test database: no fsync per statement
    conn.executemany("INSERT INTO invitations (id, window, device_id, staff_id, cases, timeout_s, created_at)"
                     " VALUES (?, ?, ?, ?, ?, 10, 1.0)",
                     [("I%d" % i, ODD[i % len(ODD)], "D%d" % (i % 7), ODD[(i * 3) % len(ODD)],
                       '[{"projectNo": "P%d", "x": "%s"}]' % (i, "\\u00e9" * (i % 3)), ) for i in range(n)])


@pytest.mark.parametrize("seed", range(4))
def test_update_many_is_executemany(tmp_path, seed):
    rng = random.Random(seed)
    a, b = _two(tmp_path)
    for conn in (a, b):
        _invitations(conn, 1200)
    for n in (0, 1, 2, 255, 256, 257, 600):
        ids = rng.sample(range(1300), n)  # some unknown: no row changes
        rows = [(rng.choice(["rated", "unrated"]), rng.choice(ODD), rng.random() * 1e9, "I%d" % i) for i in ids]
        before = a.total_changes, b.total_changes
        a.executemany("UPDATE invitations SET state = ?, event_id = ?, closed_at = ? WHERE id = ?", rows)
        assert manyrows.update_many(b, "invitations", ("state", "event_id", "closed_at"), "id", rows) == n
        assert a.total_changes - before[0] == b.total_changes - before[1]
        assert _state(a) == _state(b)
    # a key named twice: executemany's order decides, so update_many hands it to executemany
    rows = [("rated", "first", 1.0, "I1"), ("unrated", "second", 2.0, "I1")]
    a.executemany("UPDATE invitations SET state = ?, event_id = ?, closed_at = ? WHERE id = ?", rows)
    manyrows.update_many(b, "invitations", ("state", "event_id", "closed_at"), "id", rows)
    assert _state(a) == _state(b)


def test_packed_invitation_lookup_is_the_plain_select(tmp_path):
    conn = db.open_db(str(tmp_path / "i.db"))
    _invitations(conn, 300)
    conn.execute("UPDATE invitations SET event_id = 'E:1:1' WHERE rowid % 5 = 0")
    ids = ["I%d" % i for i in range(0, 320, 3)] + ["nope", "I1"]
    plain = {r[0]: r for r in conn.execute(
        "SELECT id, device_id, staff_id, window, cases, event_id FROM invitations WHERE id IN (%s)"
        % ", ".join("?" * len(ids)), ids)}
    got = commit._invitations(conn, set(ids))
    assert got == plain and all(type(v) is tuple for v in got.values())
    # a BLOB in a text column (no JSON for it): the rows come one by one, the same
    conn.execute("UPDATE invitations SET cases = x'00ff' WHERE id = 'I3'")
    plain["I3"] = plain["I3"][:4] + (b"\x00\xff",) + plain["I3"][5:]
    assert commit._invitations(conn, set(ids)) == plain
