"""The HTTP forwarder against the real upstream receiver process, on real
SQLite files: exactly once in effect, idempotency keys on every request,
per-device order, an outage (503, then hanging) followed by recovery,
records refused with 4xx kept with their reason without blocking the rest,
and credentials trouble retried rather than rejected."""

import json

from support.upstream import (
    Feeder,
    Receiver,
    make_records,
    order_violations,
    outbox_states,
    queue,
    record,
    wait_for,
)

from gateway.forward.http import HttpForwarder
from gateway.store import db, outbox


def settings(url, **kw):
    s = {"name": "province", "url": url, "batch": 10, "timeout_s": 2.0,
         "backoff_min_s": 0.05, "backoff_max_s": 0.3, "poll_s": 0.05}
    s.update(kw)
    return s


def test_happy_path_exactly_once_keys_and_order(tmp_path):
    rx = Receiver(tmp_path, "http").start()
    dbp = tmp_path / "hall.db"
    backlog, live = make_records(6, 100), make_records(6, 50, start=101)
    queue(dbp, ["province"], backlog)
    fw = HttpForwarder(dbp, "province", settings(rx.url + "/records")).start()
    try:
        feeder = Feeder(dbp, ["province"], live, chunk=7, every=0.005, wake=fw.wake)
        feeder.start()
        feeder.join(30)
        n = len(backlog) + len(live)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == n, 30)
        st = fw.status()
    finally:
        fw.stop()
        rx.stop()
    s = rx.summary()
    assert s["unique"] == n and s["duplicates"] == 0
    assert s["without_key"] == 0 and s["requests_without_header_key"] == 0
    assert s["messages"] < n
    assert order_violations(rx.arrivals()) == {}
    assert st["delivered"] == n and st["rejected"] == 0 and st["errors"] == 0


def test_batch_1_posts_one_object_with_its_key_in_the_header(tmp_path):
    rx = Receiver(tmp_path, "http").start()
    dbp = tmp_path / "hall.db"
    recs = make_records(2, 5)
    queue(dbp, ["province"], recs)
    fw = HttpForwarder(dbp, "province", settings(rx.url + "/r", batch=1)).start()
    try:
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == len(recs), 10)
    finally:
        fw.stop()
        rx.stop()
    got = rx.arrivals()
    assert len(got) == len(recs) and len({m for m, *_ in got}) == len(recs)
    assert all(key == header for _m, key, header, _d, _r in got)
    assert [r for *_, r in got] == recs  # the stored record, as queued, in order


def test_outage_then_recovery_loses_nothing(tmp_path):
    rx = Receiver(tmp_path, "http").start()
    dbp = tmp_path / "hall.db"
    recs = make_records(8, 150)
    db.open_db(dbp).close()
    fw = HttpForwarder(dbp, "province", settings(rx.url + "/records", timeout_s=0.3)).start()
    try:
        feeder = Feeder(dbp, ["province"], recs, chunk=20, every=0.01, wake=fw.wake)
        feeder.start()
        assert wait_for(lambda: rx.summary()["unique"] >= 200, 20)
        rx.control(refuse_for_s=1.0)   # 503 to everything
        assert wait_for(lambda: fw.status()["errors"] >= 2, 5)
        assert wait_for(lambda: "503" in (fw.status()["last_error"] or ""), 5)
        assert wait_for(lambda: rx.summary()["received"] > 300, 20)  # it came back
        rx.control(hang_for_s=1.0, hang_store=True)  # stores, then never answers
        feeder.join(30)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == len(recs), 30)
        st = fw.status()
    finally:
        fw.stop()
        rx.stop()
    s = rx.summary()
    assert s["unique"] == len(recs)
    assert s["duplicates"] >= 1  # the hung request was stored and sent again: deduped by key
    assert st["errors"] >= 3
    assert order_violations(rx.arrivals()) == {}
    conn = db.connect(dbp)
    retried = conn.execute("SELECT count(*) FROM outbox WHERE attempts > 1").fetchone()[0]
    assert retried >= 1


def test_rejected_records_are_kept_with_the_reason_and_do_not_block(tmp_path):
    rx = Receiver(tmp_path, "http").start()
    rx.control(reject={"field": "projectNo", "pattern": "^BAD", "status": 422})
    dbp = tmp_path / "hall.db"
    recs = make_records(4, 30)
    bad = {3, 4, 50, 119}  # one batch holds two bad ones; the last record is bad
    for i in bad:
        recs[i]["projectNo"] = "BAD-%d" % i
    queue(dbp, ["province"], recs)
    fw = HttpForwarder(dbp, "province", settings(rx.url + "/records")).start()
    try:
        assert wait_for(lambda: outbox_states(dbp, "province")["pending"] == 0, 20)
        st = fw.status()
    finally:
        fw.stop()
        rx.stop()
    assert outbox_states(dbp, "province") == {"pending": 0, "delivered": len(recs) - len(bad),
                                              "rejected": len(bad)}
    conn = db.connect(dbp)
    rows = outbox.rejected(conn, "province")
    assert {json.loads(r[5])["projectNo"] for r in rows} == {"BAD-%d" % i for i in bad}
    assert all(r[7].startswith("HTTP 422") and "projectNo" in r[7] for r in rows)
    s = rx.summary()
    assert s["unique"] == len(recs) - len(bad)
    assert not any(r["projectNo"].startswith("BAD") for *_, r in rx.arrivals())
    assert order_violations(rx.arrivals()) == {}
    assert st["rejected"] == len(bad)
    # an admin can send them again once the upstream is fixed
    conn.execute("BEGIN IMMEDIATE")
    assert outbox.requeue(conn, [r[0] for r in rows]) == len(bad)
    conn.execute("COMMIT")
    assert outbox_states(dbp, "province")["pending"] == len(bad)


def test_bad_credentials_are_retried_not_rejected(tmp_path):
    rx = Receiver(tmp_path, "http", args=["--token", "right"]).start()
    dbp = tmp_path / "hall.db"
    queue(dbp, ["province"], [record("EV-1", 1, 1), record("EV-1", 1, 2)])
    fw = HttpForwarder(dbp, "province", settings(rx.url, token="wrong")).start()
    try:
        st = wait_for(lambda: (lambda x: x if x["errors"] >= 3 else None)(fw.status()), 10)
        assert st and "401" in st["last_error"]
        assert outbox_states(dbp, "province") == {"pending": 2, "delivered": 0, "rejected": 0}
    finally:
        fw.stop()
    fw = HttpForwarder(dbp, "province", settings(rx.url, token="right")).start()
    try:
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == 2, 10)
    finally:
        fw.stop()
        rx.stop()
    assert rx.summary()["unique"] == 2


def test_nothing_listening_is_retried_with_backoff(tmp_path):
    from support.procs import free_port
    port = free_port()
    dbp = tmp_path / "hall.db"
    queue(dbp, ["province"], make_records(2, 10))
    fw = HttpForwarder(dbp, "province", settings("http://127.0.0.1:%d/x" % port)).start()
    try:
        st = wait_for(lambda: (lambda x: x if x["errors"] >= 3 and x["backlog"] == 20 else None)(
            fw.status()), 10)
        assert st and "refused" in st["last_error"].lower()
        rx = Receiver(tmp_path, "http", port=port).start()  # the upstream comes up
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == 20, 10)
    finally:
        fw.stop()
    rx.stop()
    assert rx.summary()["unique"] == 20
