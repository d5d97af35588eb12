"""Alert rules (gateway/web/alerts.py): each fires past its threshold and not at
it; the AlertBook keeps `since`, survives a restart, clears, and publishes
retained topics (an empty payload clears one); [alerts] config errors name
the key."""

import json

import pytest

from gateway import config
from gateway.errors import ConfigError
from gateway.store import db
from gateway.web import alerts

NOW = 1_790_000_000.0


def cfg(**kw):
    return config.Alerts(**kw)


def facts(**kw):
    f = {"now": NOW, "alarm": None, "devices": [], "targets": [], "bad_today": [], "bad_year": {},
         "month_windows": [], "low_invites": [], "staff_names": {}, "tz_s": 8 * 3600}
    f.update(kw)
    return f


def dev(device_id="EV-1", window="A01", online=True, last_seen=NOW, stuck=()):
    return {"device_id": device_id, "window": window, "staff_id": "S1", "online": online,
            "last_seen": last_seen, "stuck_buttons": list(stuck)}


def ids(alist):
    return sorted(a["id"] for a in alist)


def test_device_offline_after_threshold_only():
    c = cfg(offline_after_s=300)
    assert alerts.evaluate(facts(devices=[dev(online=False, last_seen=NOW - 300)]), c) == []
    got = alerts.evaluate(facts(devices=[dev(online=False, last_seen=NOW - 301)]), c)
    assert ids(got) == ["device_offline/EV-1"]
    assert got[0]["severity"] == "critical" and "A01" in got[0]["text"] and "5 分钟" in got[0]["text"]
    # online devices never; a bound device never heard from is offline
    assert alerts.evaluate(facts(devices=[dev(online=True, last_seen=NOW - 9999)]), c) == []
    never = alerts.evaluate(facts(devices=[dev(online=False, last_seen=None)]), c)
    assert ids(never) == ["device_offline/EV-1"] and "从未连接" in never[0]["text"]


def test_stuck_button_can_be_switched_off():
    d = [dev(stuck=[1, 5])]
    got = alerts.evaluate(facts(devices=d), cfg())
    assert ids(got) == ["stuck_button/EV-1"] and "1★、5★" in got[0]["text"]
    assert alerts.evaluate(facts(devices=d), cfg(stuck=False)) == []


def test_outbox_age_over_120_s_by_default():
    t = {"name": "prov", "pending": 3, "oldest_pending_age_s": 120.0}
    assert alerts.evaluate(facts(targets=[t]), cfg()) == []
    got = alerts.evaluate(facts(targets=[dict(t, oldest_pending_age_s=121.0)]), cfg())
    assert ids(got) == ["outbox_age/prov"] and got[0]["value"] == 121.0
    # nothing pending: an old age figure means nothing
    assert alerts.evaluate(facts(targets=[dict(t, pending=0, oldest_pending_age_s=999)]), cfg()) == []


def test_each_bad_rating_of_today_with_reasons():
    bad = [{"event_id": "EV-1:3:7", "at": NOW - 60, "window": "A02", "staff_id": "S2", "score": 1,
            "reasons": ["服务态度差", "办事效率低、等待时间长"]},
           {"event_id": "EV-1:3:9", "at": NOW - 30, "window": "A02", "staff_id": "S2", "score": 2,
            "reasons": []}]
    got = alerts.evaluate(facts(bad_today=bad, staff_names={"S2": "李四"}), cfg())
    assert ids(got) == ["bad_rating/EV-1:3:7", "bad_rating/EV-1:3:9"]
    assert "李四(S2)" in got[0]["text"] and "服务态度差、办事效率低" in got[0]["text"]
    assert got[0]["at"] == NOW - 60
    assert alerts.evaluate(facts(bad_today=bad), cfg(bad_rating=False)) == []


def test_staff_bad_per_year_at_the_limit():
    got = alerts.evaluate(facts(bad_year={"S1": 1, "S2": 2, "S3": 5, "": 9}), cfg())
    assert ids(got) == ["staff_bad_year/S2", "staff_bad_year/S3"]  # "" = no staff: not a person
    assert ids(alerts.evaluate(facts(bad_year={"S2": 2}), cfg(staff_bad_per_year=3))) == []


def test_window_bad_share_strictly_above():
    rows = [{"window": "A01", "bad": 1, "rated": 20, "bad_share": 0.05},
            {"window": "A02", "bad": 2, "rated": 20, "bad_share": 0.1},
            {"window": "A03", "bad": 0, "rated": 0, "bad_share": None}]
    got = alerts.evaluate(facts(month_windows=rows), cfg())
    assert ids(got) == ["window_bad_share/A02"] and "10.0%" in got[0]["text"]
    assert ids(alerts.evaluate(facts(month_windows=rows), cfg(window_bad_share=0.04))) == [
        "window_bad_share/A01", "window_bad_share/A02"]


def test_low_invites_from_the_report_breaches():
    low = [{"staff": "S9", "value": 1, "limit": 5.0}]
    got = alerts.evaluate(facts(low_invites=low), cfg())
    assert ids(got) == ["staff_low_invites/S9"] and got[0]["severity"] == "info"
    assert alerts.evaluate(facts(low_invites=low), cfg(low_invite_ratio=0)) == []


def test_storage_alarm_and_order():
    got = alerts.evaluate(facts(alarm={"since": NOW - 5, "error": "disk I/O error"},
                                low_invites=[{"staff": "S9", "value": 0, "limit": 1.0}],
                                bad_year={"S1": 3}), cfg())
    order = [a["rule"] for a in alerts.ordered(got)]
    assert order == ["storage_alarm", "staff_bad_year", "staff_low_invites"]


def test_topics_are_safe():
    assert alerts.topic_for("bad_rating/EV-1:3:7") == "alert/bad_rating/EV-1:3:7"
    assert alerts.topic_for("staff_bad_year/a/b+#c d") == "alert/staff_bad_year/a_b__c_d"


def test_book_keeps_since_clears_persists_and_publishes(tmp_path):
    path = tmp_path / "gw.db"
    conn = db.open_db(path)
    sent = []
    book = alerts.AlertBook(conn, publish=lambda t, p: sent.append((t, p)))
    off = alerts.evaluate(facts(devices=[dev(online=False, last_seen=NOW - 999)]), cfg())
    out = book.update(off, now=NOW)
    assert out[0]["since"] == NOW
    assert book.flush(connected=False, epoch=1) == 0 and sent == []
    assert book.flush(connected=True, epoch=1) == 1
    topic, payload = sent[0]
    assert topic == "alert/device_offline/EV-1" and json.loads(payload)["rule"] == "device_offline"
    # still active later: same since, text updated, republished
    later = alerts.evaluate(facts(now=NOW + 600, devices=[dev(online=False, last_seen=NOW - 999)]), cfg())
    assert book.update(later, now=NOW + 600)[0]["since"] == NOW
    assert book.flush(True, 1) == 1
    # a restart keeps since and the active set
    conn.close()
    conn = db.open_db(path)
    sent.clear()
    book = alerts.AlertBook(conn, publish=lambda t, p: sent.append((t, p)))
    assert list(book.active) == ["device_offline/EV-1"] and book.active["device_offline/EV-1"]["since"] == NOW
    # a reconnect (new epoch) republishes the active ones
    assert book.flush(True, 7) == 1
    # cleared: an empty retained payload, and it goes to the history
    assert book.update([], now=NOW + 700) == []
    sent.clear()
    assert book.flush(True, 7) == 1 and sent == [("alert/device_offline/EV-1", b"")]
    hist = book.history()
    assert [(a["id"], a["since"], a["cleared_at"]) for a in hist] == [("device_offline/EV-1", NOW, NOW + 700)]
    assert book.flush(True, 7) == 0
    conn.close()


def test_bad_rating_since_is_the_press(tmp_path):
    book = alerts.AlertBook(db.open_db(tmp_path / "gw.db"))
    bad = [{"event_id": "E:1:1", "at": NOW - 3600, "window": "A1", "staff_id": "S", "score": 2, "reasons": ["x"]}]
    out = book.update(alerts.evaluate(facts(bad_today=bad), cfg()), now=NOW)
    assert out[0]["since"] == NOW - 3600
    book.conn.close()


BASE = {"hall": {"id": "h", "areaCode": "330100", "deptCode": "D"},
        "http": {"token": "x" * 16}, "database": {"path": "gw.db"}}


def test_alerts_config_defaults_and_named_errors(tmp_path):
    c = config.parse(dict(BASE), str(tmp_path / "hall.toml"))
    assert c.alerts == config.Alerts() and c.alerts.outbox_age_s == 120.0
    c = config.parse(dict(BASE, alerts={"offline_after_s": 60, "window_bad_share": 0.1, "stuck": False}),
                     str(tmp_path / "hall.toml"))
    assert (c.alerts.offline_after_s, c.alerts.window_bad_share, c.alerts.stuck) == (60.0, 0.1, False)
    with pytest.raises(ConfigError) as err:
        config.parse(dict(BASE, alerts={"offline_after": 60, "window_bad_share": 5, "stuck": "yes",
                                        "staff_bad_per_year": 0}), str(tmp_path / "hall.toml"))
    msg = str(err.value)
    for key in ("alerts.offline_after: unknown key", "alerts.window_bad_share: must be a fraction",
                "alerts.stuck: must be true or false", "alerts.staff_bad_per_year: must be 1..1000"):
        assert key in msg, msg


def test_example_has_the_alerts_table(tmp_path):
    p = tmp_path / "hall.toml"
    p.write_text(config.example(), encoding="utf-8")
    c = config.load(str(p))
    assert c.alerts == config.Alerts()
    assert "[alerts]" in config.example() and "outbox_age_s = 120" in config.example()
