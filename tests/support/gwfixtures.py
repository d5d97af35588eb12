"""pytest fixtures and helpers for in-process gateway tests: `hall` (the
gateway with a glob over a by-id directory of ptys), connect/pair/invite a
fake device, read the database."""

import json
import sqlite3
import time

import pytest
from support.fakedev import FakeDevice, PtyTransport
from support.gwharness import InProcess, wait_for, write_config
from support.procs import free_port


def dead_http_upstream(name="prov"):
    # A target nothing listens on: rows stay pending, which is what these tests read.
    return {"name": name, "kind": "http", "url": "http://127.0.0.1:%d/records" % free_port(),
            "backoff_min_s": 5.0, "backoff_max_s": 5.0}


@pytest.fixture
def hall(tmp_path):
    byid = tmp_path / "by-id"
    byid.mkdir()
    conf = write_config(tmp_path, ports=[str(byid / "*")], upstreams=[dead_http_upstream()])
    opened = []

    def device(device_id, boot=3, provision=True, **kw):
        t = PtyTransport(str(byid), "usb-" + device_id)
        dev = FakeDevice(device_id, t, boot=boot, **kw)
        opened.append(t)
        if provision:
            provision_key(gw, dev)
        return dev

    with InProcess(conf) as gw:
        gw.device = device
        gw.db = str(tmp_path / "gw.db")
        gw.byid = byid
        gw.transports = opened
        yield gw
    for t in opened:
        t.close()


def connect(dev, gw=None, timeout=5.0):
    """hello until the gateway answers (it may not have opened the port yet).
    With gw, a device without a key is provisioned first."""
    if gw is not None and dev.key is None:
        provision_key(gw, dev)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(dev.received)
        dev.hello()
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            dev.poll(0.02)
            if len(dev.received) > n and dev.config is not None:
                return dev
    raise AssertionError("gateway never answered %s" % dev.device_id)


def provision_key(gw, dev):
    """The technician's step over USB: a key from the gateway, into the device."""
    code, body = gw.api("POST", "/api/devices/%s/key" % dev.device_id)
    assert code == 201, body
    dev.set_key(bytes.fromhex(body["key"]))
    return body


def pair(gw, dev, staff, window, **extra):
    code, body = gw.api("POST", "/api/pair", dict({"device_id": dev.device_id, "staff_id": staff,
                                                   "window": window}, **extra))
    assert code == 201, body
    dev.wait(lambda: dev.staff_id == staff)
    dev.health()  # the first tagged frame confirms the key
    wait_for(lambda: gw.gw.registry.get(dev.device_id).key_confirmed, what="key confirmed")
    return body


def invite(gw, dev, window, cases, **extra):
    code, body = gw.api("POST", "/api/invitations", dict({"window": window, "cases": cases}, **extra))
    assert code == 201, body
    dev.wait(lambda: dev.invitation is not None and dev.invitation["invitation"] == body["invitation"])
    return body


def rows(db, sql, *args):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def records(db, target="prov"):
    return [json.loads(r[0]) for r in rows(db, "SELECT record FROM outbox WHERE target = ? ORDER BY id", target)]


def seed_db(path, rows=300, device_key=False):
    """A gateway database with `rows` of today's events and as many pending
    outbox rows for target 'prov' (and device EV-1 with a key), checkpointed."""
    import os

    from gateway.store import db, outbox

    conn = db.open_db(path)
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    for i in range(rows):
        conn.execute("INSERT INTO events (event_id, device_id, boot, event_seq, kind, score, received_at,"
                     " staff_id, window) VALUES (?,?,?,?,?,?,?,?,?)",
                     ("EV-%d:1:%d" % (i % 7, i), "EV-%d" % (i % 7), 1, i, "rating", 5, now, "S1", "A01"))
    outbox.add(conn, [("prov", "k%d" % i, "EV:1:%d" % i, "EV-1", '{"pad": "%s"}' % ("x" * 300), now)
                      for i in range(rows)])
    if device_key:
        conn.execute("INSERT INTO devices (device_id, key) VALUES ('EV-1', ?)", (os.urandom(32),))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def monthly_rows(db_path, staff):
    """This month's report row of one staff member (gateway/report.py)."""
    from gateway import report

    _, month = report.local_day(time.time())
    conn = sqlite3.connect(db_path)
    try:
        table = report.monthly(conn, month, dept_code="D01")["rows"]
    finally:
        conn.close()
    (row,) = [r for r in table if r["level"] == "staff" and r["staff"] == staff]
    return row
