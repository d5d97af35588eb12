"""`hcp gateway db` (gateway/store/dbview.py, through sqlite-utils): the tables
of a running gateway's database with their rows, the migrations applied and
pending, a table's rows and an export of every table, read-only, with the
device keys, the MQTT client id, the upstream records and the invitations'
cases withheld (docs/design.md §1 "Privacy")."""

import base64
import json
import sqlite3
import subprocess

import pytest
from support.gwfixtures import connect, invite, pair
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import HCP, wait_for

from gateway.store import db as gwdb
from gateway.store import dbview


def _filled(hall):
    """A device provisioned, paired with its card, invited to two cases with
    names in them, rated: a key, a bitmap, cases and records in the file."""
    dev = connect(hall.device("EV-DB"))
    pair(hall, dev, "S-DB", "W-DB", bitmaps=[{"slot": 0, "width": 8, "height": 2,
                                              "data": base64.b64encode(b"\xaa\x55").decode()}])
    invite(hall, dev, "W-DB", [{"projectNo": "P-1", "applicant": "张三丰"}, "P-2"])
    eid = dev.rate(5)
    dev.wait(lambda: eid in dev.acked)
    wait_for(lambda: hall.gw.status()["outbox"]["pending"] + hall.gw.status()["outbox"]["delivered"] == 2,
             what="records")
    conn = sqlite3.connect(hall.db)
    secrets = [conn.execute("SELECT key FROM devices WHERE device_id = 'EV-DB'").fetchone()[0].hex(),
               conn.execute("SELECT value FROM meta WHERE key = 'mqtt_client_id'").fetchone()]
    conn.close()
    return [s for s in secrets if s] + ["张三丰"]


def test_tables_rows_and_what_is_withheld(hall):
    secrets = _filled(hall)
    view = dbview.open_ro(hall.db)
    got = {t["table"]: t for t in dbview.tables(view)}
    assert {"events", "outbox", "devices", "invitations", "bitmaps", "meta", "migrations"} <= set(got)
    assert got["events"]["rows"] == 1 and got["outbox"]["rows"] == 2 and "record" in got["outbox"]["columns"]
    m = dbview.migrations(view)
    assert [a["name"] for a in m["applied"]] == [name for name, _ in gwdb.MIGRATIONS] and m["pending"] == []
    (device,) = [r for r in dbview.rows(view, "devices") if r["device_id"] == "EV-DB"]
    assert device["key"] == dbview.WITHHELD and device["prev_key"] is None and device["fw"]
    assert all(r["record"] == dbview.WITHHELD for r in dbview.rows(view, "outbox"))
    (inv,) = dbview.rows(view, "invitations")
    assert inv["cases"] == dbview.WITHHELD and inv["state"] == "rated"
    assert [r["data"] for r in dbview.rows(view, "bitmaps")] == ["(2 bytes)"]
    assert [r["event_seq"] for r in dbview.rows(view, "events", newest=True)] == [1]
    assert len(list(dbview.rows(view, "audit", limit=1))) == 1
    text = json.dumps([list(dbview.rows(view, t, limit=None)) for t in got], ensure_ascii=False)
    assert not [s for s in secrets if s in text]
    with pytest.raises(dbview.DbViewError, match="no table 'nope'; the tables: "):
        list(dbview.rows(view, "nope"))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        view.execute("DELETE FROM events")


def test_the_commands_on_a_running_gateway(hall, tmp_path):
    secrets = _filled(hall)
    conf = str(hall.cfg.path)

    def hcp(*args):
        return subprocess.run([HCP, "gateway", "db", *args, "-c", conf], capture_output=True, text=True, timeout=60)

    out = hcp("tables")
    assert out.returncode == 0 and "migrations: %d applied" % len(gwdb.MIGRATIONS) in out.stdout, out.stderr
    assert any(line.split()[:2] == ["events", "1"] for line in out.stdout.splitlines()), out.stdout
    out = hcp("rows", "invitations", "--newest", "--limit", "1")
    assert out.returncode == 0 and json.loads(out.stdout)["cases"] == dbview.WITHHELD, out.stdout
    bad = hcp("rows", "nope")
    assert bad.returncode == 1 and "no table 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    for fmt in ("csv", "json"):
        out = hcp("export", "--out", str(tmp_path / fmt), "--format", fmt)
        assert out.returncode == 0 and "wrote" in out.stdout, out.stderr
        files = sorted(p.name for p in (tmp_path / fmt).iterdir())
        assert "events.%s" % fmt in files and "devices.%s" % fmt in files
        text = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / fmt).iterdir())
        assert "EV-DB" in text and not [s for s in secrets if s in text]
    assert len(json.loads((tmp_path / "json" / "outbox.json").read_text())) == 2
    # The gateway took no notice: still writing.
    assert hall.api("POST", "/api/storage", {"max_size_mb": 0})[0] == 200


def test_no_database(tmp_path):
    with pytest.raises(dbview.DbViewError, match="no database at"):
        dbview.open_ro(tmp_path / "missing.db")
