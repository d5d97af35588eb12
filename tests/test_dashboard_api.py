"""/api/dashboard and the page's files: today's figures counted independently
here, the month's equal to gateway.report.monthly, 差评 with reason labels,
the chart series, tiles, outbox depth per device, alerts; the static files
need no token and nothing else leaks without one."""

import sqlite3
import time

from support.gwfixtures import connect, invite, pair
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import api, wait_for

from gateway import report


def _rate(gw, dev, window, case, score, reasons=()):
    invite(gw, dev, window, [case])
    dev.rate(score, reasons)
    dev.wait(lambda: not dev.journal)


def test_dashboard_figures(hall):
    d0 = connect(hall.device("EV-0"))
    pair(hall, d0, "S0", "A00", staff_name="张三")
    d1 = connect(hall.device("EV-1"))
    pair(hall, d1, "S1", "A01", staff_name="李四")
    _rate(hall, d0, "A00", "P-1", 5)
    _rate(hall, d0, "A00", "P-2", 4)
    _rate(hall, d0, "A00", "P-3", 1, ["R1", "R2"])
    invite(hall, d0, "A00", ["P-4"])
    d0.timeout()
    d0.wait(lambda: not d0.journal)
    d1.press(3)
    _rate(hall, d1, "A01", "P-5", 2, ["R8"])
    events = 6
    # An invitation d1 never answers: expired (the sweep itself is tested in
    # test_gateway_invitations), counted as "no answer" today, not as invited.
    hall.gw.cfg.device.expire_grace_s = 0
    invite(hall, d1, "A01", ["P-6"], timeout_s=1)
    d1.invitation = None
    assert hall.gw.invitations.expire(now=time.time() + 5) == 1

    def caught_up(s):  # today's figures follow within ~1 s, the month's within ~2 s
        month = [r for r in s.get("month_figures", {}).get("rows", []) if r["level"] == "department"]
        return s if (s.get("gateway", {}).get("events") == events and s["today"]["rows"][0]["rated"] == 4
                     and month and month[0]["rated"] == 4 and s["today"]["expired"] == 1) else None

    snap = wait_for(lambda: caught_up(api(hall.port, "GET", "/api/dashboard")[1]), timeout=6,
                    what="dashboard figures")
    rows = {(r["level"], r["window"], r["staff"]): r for r in snap["today"]["rows"]}
    total = rows[("total", "", "")]
    assert (total["rated"], total["good"], total["bad"], total["unrated"], total["uninvited"],
            total["invited"]) == (4, 2, 2, 1, 1, 5)
    assert total["coverage"] == 0.8 and total["satisfaction_rate"] == 0.5
    a00 = rows[("window", "A00", "")]
    assert (a00["非常满意"], a00["满意"], a00["非常不满意"], a00["bad"], a00["unrated"]) == (1, 1, 1, 1, 1)
    assert a00["reasons"] == {"R1": 1, "R2": 1} and a00["coverage"] == 0.75
    assert rows[("staff", "A01", "S1")]["uninvited"] == 1
    assert rows[("staff", "A01", "S1")]["reasons"] == {"R8": 1}

    # the month is gateway.report's table, as `hcp report monthly` makes it
    conn = sqlite3.connect(hall.db)
    try:
        want = report.monthly(conn, snap["month"], dept_code="D01", tz_min=480)
    finally:
        conn.close()
    assert snap["month_figures"]["rows"] == want["rows"]

    bad = {b["event_id"]: b for b in snap["bad_today"]}
    assert sorted((b["window"], b["score"], tuple(b["reasons"])) for b in bad.values()) == [
        ("A00", 1, ("服务态度差", "办事效率低、等待时间长")), ("A01", 2, ("其他问题",))]
    hourly = snap["series"]["hourly"]
    assert len(hourly) == 24 and [sum(x[0] for x in hourly), sum(x[1] for x in hourly)] == [2, 2]
    assert sum(x[0] + x[1] for x in snap["series"]["daily"]) == 4

    tiles = {t["window"]: t for t in snap["windows"]}
    assert set(tiles) == {"A00", "A01"}
    assert tiles["A00"]["staff_name"] == "张三" and tiles["A00"]["online"] is True
    assert tiles["A00"]["outbox_pending"] == 4  # three ratings and the unrated session
    assert tiles["A01"]["outbox_pending"] == 1  # the uninvited press makes no record
    assert tiles["A00"]["last_rating_at"] is not None and tiles["A00"]["problems"] == []
    assert snap["upstream"]["targets"][0]["pending"] == 5
    assert snap["staff_names"] == {"S0": "张三", "S1": "李四"}

    ids = {a["id"] for a in snap["alerts"]}
    assert {"bad_rating/%s" % e for e in bad} <= ids
    assert {"window_bad_share/A00", "window_bad_share/A01"} <= ids
    assert not any(i.startswith(("device_offline", "staff_bad_year", "outbox_age")) for i in ids)
    code, body = api(hall.port, "GET", "/api/alerts")
    assert code == 200 and {a["id"] for a in body["alerts"]} == ids
    # worst first
    sev = [a["severity"] for a in snap["alerts"]]
    assert sev == sorted(sev, key=["critical", "warning", "info"].index)


def test_page_files_without_token_and_nothing_else(hall):
    import urllib.error
    import urllib.request

    def get(path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (hall.port, path), timeout=5) as r:
                return r.status, r.headers.get("Content-Type"), r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type"), err.read()

    for path in ("/", "/dashboard"):
        code, ctype, body = get(path)
        assert code == 200 and ctype.startswith("text/html") and b"/web/dashboard.js" in body
    code, ctype, body = get("/web/dashboard.js")
    assert code == 200 and ctype.startswith("text/javascript") and b"Authorization" in body
    assert get("/web/dashboard.css")[1].startswith("text/css")
    for path in ("/web/../config.py", "/web/..%2Fconfig.py", "/web/__init__.py", "/api/dashboard",
                 "/api/alerts", "/metrics", "/web/nothing.js"):
        code, _, body = get(path)
        assert code == 401 and b"import" not in body, path
    assert api(hall.port, "GET", "/api/dashboard", token="wrong-token-000000")[0] == 401
