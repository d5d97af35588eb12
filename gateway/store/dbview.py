"""The gateway's database for a person: what `hcp gateway db` shows an admin
or an auditor (its tables and their size, the migrations applied and
pending, a table's rows, an export of every table), read through
sqlite-utils on a read-only connection, so that it can look at the file of
a running gateway without taking a lock its commits would wait for. The
measured paths (ingest, the outbox, the dashboard) use sqlite3 directly.

What never leaves through here (docs/security.md, docs/design.md §1
"Privacy"): the device keys, the gateway's MQTT client id (who knows it can
take over its session), the upstream records and the cases of invitations
(the fields the upstream profile names: forwarded, never shown). Such a
value reads WITHHELD; a BLOB (a bitmap) reads as its size.
"""

import csv
import json
import pathlib
import sqlite3

from gateway.store.db import MIGRATIONS

WITHHELD = "(withheld)"
SECRET_COLUMNS = {"devices": {"key", "prev_key"}, "outbox": {"record"}, "invitations": {"cases"}}
SECRET_META = {"mqtt_client_id"}


class DbViewError(RuntimeError):
    """The database cannot be read, or has no such table; the message says which."""


def open_ro(path):
    """sqlite_utils.Database on a read-only connection to `path`."""
    import sqlite_utils

    p = pathlib.Path(path)
    if not p.is_file():
        raise DbViewError("no database at %s" % path)
    try:
        conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        raise DbViewError("cannot read %s: %s" % (path, err)) from err
    return sqlite_utils.Database(conn)


def tables(db):
    """[{"table", "rows", "columns": [name, ...]}] of every table."""
    return [{"table": name, "rows": db[name].count, "columns": [c.name for c in db[name].columns]}
            for name in db.table_names()]


def migrations(db):
    """{"applied": [{"name", "applied_at"}], "pending": [name, ...]}: what
    this gateway's code would still apply to the file (gateway/store/db.py)."""
    applied = list(db["migrations"].rows_where(order_by="applied_at")) if db["migrations"].exists() else []
    done = {m["name"] for m in applied}
    return {"applied": applied, "pending": [name for name, _ in MIGRATIONS if name not in done]}


def _shown(table, row):
    secret = SECRET_COLUMNS.get(table, ())
    out = {}
    for k, v in row.items():
        if k in secret and v is not None:
            v = WITHHELD
        elif isinstance(v, bytes):
            v = "(%d bytes)" % len(v)
        out[k] = v
    if table == "meta" and out.get("key") in SECRET_META:
        out["value"] = WITHHELD
    return out


def rows(db, table, limit=20, newest=False):
    """The rows of `table` as dicts (secrets withheld), oldest first (by
    rowid), or the newest first; at most `limit` (None: all)."""
    if table not in db.table_names():
        raise DbViewError("no table %r; the tables: %s" % (table, ", ".join(db.table_names())))
    t = db[table]
    order = "rowid desc" if newest else "rowid"
    if "without rowid" in t.schema.lower():  # none of the gateway's: their key orders them
        order = ", ".join("[%s]%s" % (k, " desc" if newest else "") for k in t.pks)
    for row in t.rows_where(order_by=order, limit=limit):
        yield _shown(table, row)


def export(db, out_dir, fmt="csv"):
    """Every table into out_dir as TABLE.csv or TABLE.json (secrets
    withheld); {table: rows written}."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for info in tables(db):
        name, cols = info["table"], info["columns"]
        n = 0
        if fmt == "json":
            with open(out / (name + ".json"), "w", encoding="utf-8") as f:
                f.write("[")
                for n, row in enumerate(rows(db, name, limit=None), 1):
                    f.write(("," if n > 1 else "") + "\n" + json.dumps(row, ensure_ascii=False))
                f.write("\n]\n")
        else:
            with open(out / (name + ".csv"), "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for row in rows(db, name, limit=None):
                    w.writerow(row)
                    n += 1
        counts[name] = n
    return counts
