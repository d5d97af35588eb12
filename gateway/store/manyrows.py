"""Many rows in few statements: `insert_many` and `update_many` do what
`executemany` does, in multi-row statements (why: insert_many's docstring).
The hot path's writers use them: the commit thread (events, invitations
closed), the outbox, the registry's replay states."""

import itertools
import sqlite3

ROWS_PER_STATEMENT = 256  # x 15 columns: well under SQLite's 32766 variables
_multi = {}  # (head, width, rows) -> SQL text


def _values_sql(head, width, k):
    sql = _multi.get((head, width, k))
    if sql is None:
        one = "(" + ", ".join("?" * width) + ")"
        sql = _multi[(head, width, k)] = head + " VALUES " + ", ".join([one] * k)
    return sql


def insert_many(conn, head, width, rows):
    """`conn.executemany(head + " VALUES (?, ...)", rows)` (head: "INSERT [OR
    IGNORE] INTO t (cols)", width: the number of columns) in a few multi-row
    statements: chunks of ROWS_PER_STATEMENT rows, the rest in powers of two,
    so at most a dozen statement texts per table, all in the connection's
    statement cache. The same rows go in, in the same order, with the same
    conflict handling (SQLite resolves a conflict row by row inside a
    multi-row INSERT) and the same rowids and total_changes. Why: executemany
    steps once per row, and the sqlite3 module releases and takes back the
    GIL around every step; with the serial thread running, each take-back is
    a wait for the other thread (twice per row, hundreds of rows per batch).
    Returns the number of rows."""
    rows = rows if isinstance(rows, list) else list(rows)
    if any(len(r) != width for r in rows):  # a flat parameter list would shift silently
        raise sqlite3.ProgrammingError("insert_many: every row needs %d values" % width)
    chain = itertools.chain.from_iterable
    for i, k in _chunks(len(rows)):
        conn.execute(_values_sql(head, width, k), list(chain(rows[i:i + k])))
    return len(rows)


def _chunks(n):
    """(start, size) of the statements that carry n rows: full ones, then
    powers of two, so that few distinct SQL texts are ever built."""
    i = 0
    while i < n:
        left = n - i
        k = ROWS_PER_STATEMENT if left >= ROWS_PER_STATEMENT else 1 << (left.bit_length() - 1)
        yield i, k
        i += k


_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def update_many(conn, table, columns, key, rows):
    """`conn.executemany("UPDATE table SET c1 = ?, ... WHERE key = ?", rows)`
    (each row: the new values of `columns`, then the key) in a few
    `UPDATE ... FROM (VALUES ...)` statements, for the reason of insert_many.
    Each key must come once (an UPDATE FROM applies one matching row per
    target row): rows naming a key twice, or an SQLite before 3.33, get the
    executemany itself."""
    rows = rows if isinstance(rows, list) else list(rows)
    width = len(columns) + 1
    if (not _UPDATE_FROM or any(len(r) != width for r in rows)
            or len({r[-1] for r in rows}) != len(rows)):
        conn.executemany("UPDATE %s SET %s WHERE %s = ?" % (table, ", ".join(c + " = ?" for c in columns), key),
                         rows)
        return len(rows)
    head = "UPDATE %s SET %s FROM (" % (table, ", ".join("%s = v.column%d" % (c, i + 1)
                                                          for i, c in enumerate(columns)))
    tail = ") AS v WHERE %s.%s = v.column%d" % (table, key, width)
    chain = itertools.chain.from_iterable
    for i, k in _chunks(len(rows)):
        sql = _multi.get((head, tail, width, k))
        if sql is None:
            one = "(" + ", ".join("?" * width) + ")"
            sql = _multi[(head, tail, width, k)] = head + "VALUES " + ", ".join([one] * k) + tail
        conn.execute(sql, list(chain(rows[i:i + k])))
    return len(rows)
