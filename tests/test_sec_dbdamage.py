"""Security review #12, finding 12 (the rest of it): damage that appears in the
database WHILE the gateway runs. Start-up refuses a damaged file
(tests/test_sec_dbcheck.py); a page that goes bad later must not make the
dashboard, a forwarder or the commit thread log a traceback a second, nor
make the storage alarm flap. Real SQLite files, their pages overwritten with
garbage under the running connections; every test bounded to a few seconds.

Also the two permission items: a config readable by others is warned about
once (it holds the API token), and the simulator writes its hall.toml 0600."""

import logging
import os
import random
import sqlite3
import stat
import threading
import time

import pytest
from support.gwfixtures import seed_db
from support.gwharness import InProcess, wait_for, write_config
from support.procs import free_port

from gateway import config
from gateway.config import Hall
from gateway.devices.registry import Device
from gateway.forward.base import ForwarderBase
from gateway.forward.http import HttpForwarder
from gateway.store import commit, db
from gateway.web import dashboard

ROWS = 300


def _touch(path, checkpoint=False):
    """A write from a side connection: every other connection drops its page
    cache at its next read (the WAL changed); with `checkpoint` the WAL is
    copied into the file and emptied first, so the file is all there is."""
    side = sqlite3.connect(str(path), isolation_level=None, timeout=10)
    try:
        side.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('test-touch', ?)", (repr(time.time()),))
        if checkpoint:
            for _ in range(50):
                if side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("could not checkpoint")
        return side.execute("PRAGMA page_size").fetchone()[0]
    finally:
        side.close()


def _smash(path, tables):
    """Overwrite every page of `tables` (and of their indexes) with garbage.
    Returns what was there, for _restore."""
    size = _touch(path, checkpoint=True)
    side = sqlite3.connect(str(path))
    marks = ",".join("?" * len(tables))
    pages = [p for (p,) in side.execute(
        "SELECT pageno FROM dbstat WHERE name IN (SELECT name FROM sqlite_schema WHERE tbl_name IN (%s))"
        % marks, tables)]
    side.close()
    n = os.path.getsize(path) // size
    assert pages and all(1 < p <= n for p in pages), (pages, n)  # never page 1, the schema
    rng = random.Random(12)
    saved = {}
    with open(path, "r+b") as f:
        for p in pages:
            f.seek((p - 1) * size)
            saved[p] = f.read(size)
            f.seek((p - 1) * size)
            f.write(bytes(rng.randrange(256) for _ in range(size)))
    _touch(path)  # a connection that read between the checkpoint and the garbage forgets it
    return saved, size


def _restore(path, smashed):
    saved, size = smashed
    with open(path, "r+b") as f:
        for p, page in saved.items():
            f.seek((p - 1) * size)
            f.write(page)
    _touch(path)


def _records(caplog, name):
    return [r for r in caplog.records if r.name == name]


def _warnings(records):
    return [r for r in records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------- dashboard

LOG_DASH = "hcp.gateway.web.dashboard"


@pytest.fixture
def running(tmp_path):
    """A gateway on a seeded database (no devices, no upstream: nothing else
    writes the events and outbox pages the tests damage)."""
    path = tmp_path / "gw.db"
    seed_db(path, ROWS)
    with InProcess(write_config(tmp_path)) as g:
        g.path = path
        yield g


def test_dashboard_serves_its_last_figures_marked_stale_and_logs_once(running, caplog):
    caplog.set_level(logging.DEBUG, logger="hcp")
    d = running.gw.dashboard
    wait_for(lambda: d._snapshot is not None, what="first snapshot")
    d.stop()  # the ticks are this test's from here on
    d.snapshot()  # someone is watching: today's figures are recomputed when due
    before = d.tick()
    assert before["today"]["rows"][0]["rated"] == ROWS and not before.get("stale")

    smashed = _smash(running.path, ["events", "outbox"])
    caplog.clear()
    for _ in range(15):  # a tick a second for 15 s, each one due (the clock moved on past REFRESH_S)
        d.snapshot()
        d.tick(now=time.time() + 2 * dashboard.REFRESH_S)
        time.sleep(0.03)
    recs = _records(caplog, LOG_DASH)
    assert not [r for r in recs if r.exc_info], [r.getMessage() for r in recs]
    warned = _warnings(recs)
    assert len(warned) == 1 and "malformed" in warned[0].getMessage(), [r.getMessage() for r in recs]
    snap = d.snapshot()
    assert snap["today"]["rows"][0]["rated"] == ROWS  # what it last computed
    assert snap["stale"] and "malformed" in snap["stale"]["error"] and snap["stale"]["since"] <= time.time()

    _restore(running.path, smashed)
    caplog.clear()
    deadline = time.monotonic() + 5.0  # the month's figures are retried at their own pace
    while time.monotonic() < deadline and d.snapshot().get("stale"):
        d.tick(now=time.time() + 2 * dashboard.REFRESH_S)
        time.sleep(0.1)
    for _ in range(3):
        d.tick(now=time.time() + 2 * dashboard.REFRESH_S)
    assert not d.snapshot().get("stale")
    warned = _warnings(_records(caplog, LOG_DASH))
    assert len(warned) == 1 and "again" in warned[0].getMessage(), [r.getMessage() for r in warned]


def test_dashboard_starting_on_damage_logs_once_without_traceback(running, caplog):
    caplog.set_level(logging.DEBUG, logger="hcp")
    _smash(running.path, ["events", "outbox"])
    caplog.clear()
    # A dashboard that has computed nothing yet (as after a restart the
    # check let through): every tick fails, 50 of them a second here.
    d = dashboard.Dashboard(running.gw, running.gw._conn(), tick_s=0.02)
    d.start()
    time.sleep(0.6)
    d.stop()
    recs = _records(caplog, LOG_DASH)
    assert not [r for r in recs if r.exc_info], "%d tracebacks" % len([r for r in recs if r.exc_info])
    warned = _warnings(recs)
    assert len(warned) == 1 and "malformed" in warned[0].getMessage(), [r.getMessage() for r in recs]


def test_dashboard_read_raises_the_first_error(running, monkeypatch):
    conn = running.gw._conn()
    p = dashboard.params(running.gw.cfg)

    def io_error(c, *args):  # what SQLite does on an I/O error: the transaction is rolled back
        c.execute("SELECT count(*) FROM events").fetchone()
        c.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(dashboard.READERS, "day", io_error)
    with pytest.raises(sqlite3.OperationalError) as exc:
        dashboard.read(conn, "day", time.time() - 3600, p)
    assert str(exc.value) == "disk I/O error"  # not "cannot commit - no transaction is active"
    assert not conn.in_transaction
    monkeypatch.undo()
    _smash(running.path, ["events", "outbox"])
    with pytest.raises(sqlite3.DatabaseError) as exc:
        dashboard.read(conn, "day", time.time() - 3600, p)
    assert "malformed" in str(exc.value)
    assert not conn.in_transaction


def test_dashboard_bug_traceback_at_most_once_a_minute_per_message(running, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="hcp")
    d = dashboard.Dashboard(running.gw, running.gw._conn(), tick_s=0.02)
    calls = []

    def broken(now):
        calls.append(now)
        raise RuntimeError("bug %d" % (len(calls) > 20))  # one message, then another

    monkeypatch.setattr(d, "compute", broken)
    d.start()
    wait_for(lambda: len(calls) > 30, timeout=5, what="ticks")
    d.stop()
    tracebacks = [r for r in _records(caplog, LOG_DASH) if r.exc_info]
    assert [str(r.exc_info[1]) for r in tracebacks] == ["bug 0", "bug 1"]


# --------------------------------------------------------------- forwarder

LOG_FW = "gateway.forward.base"


def _forwarder(path):
    return HttpForwarder(str(path), "prov", {"url": "http://127.0.0.1:%d/records" % free_port(),
                                             "backoff_min_s": 0.01, "backoff_max_s": 0.02})


def test_forwarder_on_a_damaged_outbox_logs_once_and_keeps_retrying(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "gw.db"
    seed_db(path, ROWS)
    _smash(path, ["outbox"])
    caplog.clear()
    fw = _forwarder(path).start()
    wait_for(lambda: fw.status()["errors"] >= 10, timeout=5, what="retries")  # backing off, retrying
    fw.stop()
    st = fw.status()
    assert "malformed" in st["last_error"]
    recs = _records(caplog, LOG_FW)
    assert not [r for r in recs if r.exc_info], "%d tracebacks" % len([r for r in recs if r.exc_info])
    warned = _warnings(recs)
    assert len(warned) == 1 and "malformed" in warned[0].getMessage(), [r.getMessage() for r in recs]


def test_forwarder_bug_traceback_at_most_once_a_minute_per_message(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "gw.db"
    seed_db(path, rows=1)
    fw = _forwarder(path)
    calls = []

    def broken(self):
        calls.append(1)
        raise RuntimeError("bug %d" % (len(calls) > 10))

    monkeypatch.setattr(HttpForwarder, "_run_loop", broken)
    fw.start()
    wait_for(lambda: len(calls) > 20, timeout=5, what="retries")
    fw.stop()
    tracebacks = [r for r in _records(caplog, LOG_FW) if r.exc_info]
    assert [str(r.exc_info[1]) for r in tracebacks] == ["bug 0", "bug 1"]
    assert fw.status()["errors"] > 20


def test_forwarder_loop_is_the_base_class_one():
    assert HttpForwarder._main is ForwarderBase._main  # the fix above covers every forwarder


# --------------------------------------------------------------- commit

LOG_COMMIT = "hcp.gateway.store.commit"


def _committer(path):
    conn = db.connect(path)  # not open_db: the test damages a running gateway's file
    alarms = []
    c = commit.Committer(conn, ["prov"], Hall(id="h", areaCode="330100", deptCode="D1"), lambda dev, ids: None,
                         on_alarm=alarms.append)
    return c, alarms


def _event(dev, seq):
    m = {"type": "event", "session": 1, "seq": seq, "device_id": dev.device_id, "boot": 9, "event_seq": seq,
         "kind": "uninvited", "score": 4, "reasons": [], "invitation": "", "time": 0, "uptime_ms": seq}
    return commit.Event(m, dev, time.time(), time.time(), "received")


def test_damaged_events_keep_the_storage_alarm_raised_until_restart(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="hcp")
    path = tmp_path / "gw.db"
    seed_db(path, ROWS)
    c, alarms = _committer(path)
    dev = Device("EV-9")
    c._commit([_event(dev, 1)])
    assert c.alarm is None and c.stats["events"] == 1
    _smash(path, ["events"])  # the meta table the probe writes is intact
    caplog.clear()
    for seq in range(2, 8):  # a batch, then the probe's round, again and again
        c._commit([_event(dev, seq)])
        assert c.alarm is not None
        c._probe()
        assert c.alarm is not None, "the probe cleared the alarm of a damaged database"
    err = c.alarm["error"]
    assert "database damaged" in err and "restart the gateway" in err and "backup" in err, err
    assert len(alarms) == 1 and alarms[0] is c.alarm
    recs = _warnings(_records(caplog, LOG_COMMIT))
    assert len(recs) == 1 and "database damaged" in recs[0].getMessage(), [r.getMessage() for r in recs]
    assert c.stats["failed_batches"] == 6 and c.stats["events"] == 1
    c.conn.close()


def test_damage_after_a_full_disk_turns_the_alarm_into_damage(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="hcp")
    path = tmp_path / "gw.db"
    seed_db(path, rows=1)
    c, alarms = _committer(path)
    c._set_alarm(sqlite3.OperationalError("database or disk is full"))
    err = sqlite3.DatabaseError("unusual wording")
    err.sqlite_errorcode = getattr(sqlite3, "SQLITE_CORRUPT", 11)
    c._set_alarm(err)
    c._set_alarm(sqlite3.DatabaseError("file is not a database"))
    c._probe()
    c._clear_alarm()
    assert c.alarm is not None and "database damaged" in c.alarm["error"]
    assert [a is not None for a in alarms] == [True, True]  # raised, then changed to damage; never cleared
    recs = _warnings(_records(caplog, LOG_COMMIT))
    assert len(recs) == 2, [r.getMessage() for r in recs]  # the full disk, then the damage
    c.conn.close()


def test_a_full_disk_alarm_still_clears_when_writes_work(tmp_path):
    path = tmp_path / "gw.db"
    seed_db(path, rows=1)
    c, alarms = _committer(path)
    c._set_alarm(sqlite3.OperationalError("database or disk is full"))
    c._probe()
    assert c.alarm is None and [a is None for a in alarms] == [False, True]
    c.conn.close()


# --------------------------------------------------------------- config file mode

LOG_CONFIG = "hcp.gateway.config"


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_config_readable_by_others_is_warned_once_and_left_alone(tmp_path, caplog, mode):
    path = write_config(tmp_path)
    os.chmod(path, mode)
    with caplog.at_level(logging.DEBUG, logger="hcp"):
        cfg = config.load(str(path))
    assert cfg.token
    warned = _warnings(_records(caplog, LOG_CONFIG))
    assert len(warned) == 1, [r.getMessage() for r in warned]
    msg = warned[0].getMessage()
    assert str(path) in msg and "token" in msg and "chmod 600" in msg and oct(mode)[2:] in msg, msg
    assert _mode(path) == mode  # the admin's file, as it was


def test_config_0600_loads_quietly(tmp_path, caplog):
    path = write_config(tmp_path)
    os.chmod(path, 0o600)
    with caplog.at_level(logging.DEBUG, logger="hcp"):
        config.load(str(path))
    assert not _warnings(_records(caplog, LOG_CONFIG))


# --------------------------------------------------------------- simulator config

@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


class _Port:
    port = 1


def _prepared(hall, tmp_path):
    hall.ttydir = tmp_path / "tty"
    hall.receivers = {"http": _Port()}
    hall.broker = _Port()
    return hall


def test_simulated_hall_writes_its_config_0600(tmp_path, umask022):
    from simulator.hall import SimHall

    hall = _prepared(SimHall(tmp_path / "w"), tmp_path)
    old = tmp_path / "w" / "hall.toml"
    old.write_text("stale = 1\n")
    os.chmod(old, 0o644)  # a config left by an earlier run: replaced, not reused in its mode
    hall._write_config()
    assert _mode(hall.config_path) == 0o600
    assert hall.token in hall.config_path.read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["hall.toml"]


def test_fast_hall_writes_its_config_0600(tmp_path, umask022):
    from simulator.fastlink import FastHall

    size = threading.stack_size()
    try:
        hall = _prepared(FastHall(tmp_path / "w"), tmp_path)
    finally:
        threading.stack_size(size)  # FastHall sets it for its thousands of actors
    hall._write_config()
    assert _mode(hall.config_path) == 0o600
    text = hall.config_path.read_text(encoding="utf-8")
    assert hall.token in text and "[mqtt]" in text
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["hall.toml"]
