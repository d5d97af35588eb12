"""`hcp report monthly` on a seeded month, against totals computed here
independently from the same random ratings."""

import csv
import datetime
import io
import json
import pathlib
import random
import subprocess
import sys

import openpyxl

from gateway.store import db

HCP = str(pathlib.Path(sys.executable).parent / "hcp")
TZ = datetime.timezone(datetime.timedelta(hours=8))


def _seed(path, rng):
    conn = db.open_db(path)
    staff = {"A01": "S1", "A02": "S2", "A03": "S3", "A04": "S4"}
    truth = {}
    rows = []
    n = 0

    def add(kind, score, reasons, window, when):
        nonlocal n
        n += 1
        rows.append(("D%s:1:%d" % (window, n), "D" + window, 1, n, kind, score, ",".join(reasons),
                     "I%d" % n if kind != "uninvited" else "", int(when), 0, when, when,
                     staff[window], window))

    for window in staff:
        t = truth[window] = {"levels": {s: 0 for s in range(1, 6)}, "unrated": 0, "uninvited": 0,
                             "reasons": {}}
        # A03 invites rarely; A04 gets many 差评.
        count = 4 if window == "A03" else rng.randint(40, 60)
        for _ in range(count):
            day = rng.randint(1, 30)
            when = datetime.datetime(2026, 11, day, rng.randint(8, 17), rng.randint(0, 59), tzinfo=TZ).timestamp()
            r = rng.random()
            if r < 0.1:
                add("unrated", 0, [], window, when)
                t["unrated"] += 1
            elif r < 0.15:
                add("uninvited", rng.randint(1, 5), [], window, when)
                t["uninvited"] += 1
            else:
                score = rng.choice([1, 2] if window == "A04" and rng.random() < 0.3 else [3, 4, 5, 5, 5])
                reasons = rng.sample(["R1", "R2", "R3"], rng.randint(1, 2)) if score <= 2 else []
                add("rating", score, reasons, window, when)
                t["levels"][score] += 1
                for code in reasons:
                    t["reasons"][code] = t["reasons"].get(code, 0) + 1
    # Outside the month (local time): 2026-10-31 23:30 and 2026-12-01 00:10 +08:00.
    add("rating", 1, ["R1"], "A01", datetime.datetime(2026, 10, 31, 23, 30, tzinfo=TZ).timestamp())
    add("rating", 5, [], "A01", datetime.datetime(2026, 12, 1, 0, 10, tzinfo=TZ).timestamp())
    # The October 差评 counts toward A01's yearly total; add one more in March.
    add("rating", 2, ["R2"], "A01", datetime.datetime(2026, 3, 3, 10, 0, tzinfo=TZ).timestamp())
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events (event_id, device_id, boot, event_seq, kind, score, reasons,"
                     " invitation, device_time, uptime_ms, press_time, received_at, staff_id, window)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    conn.close()
    return truth


def _run(*args):
    proc = subprocess.run([HCP, "report", "monthly", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_monthly_report_matches_independent_totals(tmp_path):
    path = tmp_path / "hall.db"
    truth = _seed(path, random.Random(11))
    data = json.loads(_run("--month", "2026-11", "--db", str(path), "--format", "json", "--dept", "D01"))
    rows = {(r["level"], r["window"]): r for r in data["rows"]}
    total_rated = 0
    for window, t in truth.items():
        row = rows[("window", window)]
        rated = sum(t["levels"].values())
        good = t["levels"][3] + t["levels"][4] + t["levels"][5]
        total_rated += rated
        assert row["rated"] == rated and row["good"] == good and row["bad"] == rated - good
        assert row["非常满意"] == t["levels"][5] and row["非常不满意"] == t["levels"][1]
        assert row["unrated"] == t["unrated"] and row["uninvited"] == t["uninvited"]
        assert row["invited"] == rated + t["unrated"]
        assert row["reasons"] == dict(sorted(t["reasons"].items()))
        assert abs(row["satisfaction_rate"] - good / rated) < 1e-4
        assert rows[("staff", window)]["rated"] == rated
    assert rows[("department", "")]["rated"] == total_rated
    rules = {(b["rule"], b.get("staff") or b.get("window")) for b in data["breaches"]}
    assert ("staff_low_invites", "S3") in rules
    assert ("window_bad_share", "A04") in rules
    # A01: one 差评 in March + one on Oct 31 (local) = 2 this year, whatever November holds.
    assert ("staff_bad_per_year", "S1") in rules

    text = _run("--month", "2026-11", "--db", str(path), "--format", "csv")
    table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert table[0][:4] == ["层级", "部门", "窗口", "工作人员"]
    a01 = next(r for r in table if r[:1] == ["window"] and r[2] == "A01")
    assert int(a01[table[0].index("评价数")]) == rows[("window", "A01")]["rated"]

    xlsx = tmp_path / "m.xlsx"
    subprocess.run([HCP, "report", "monthly", "--month", "2026-11", "--db", str(path), "--format", "xlsx",
                    "--out", str(xlsx)], check=True, capture_output=True, timeout=60)
    ws = openpyxl.load_workbook(xlsx)["评价数据统计表"]
    header = [c.value for c in ws[1]]
    found = [r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == "window" and r[2] == "A04"]
    assert found[0][header.index("差评")] == rows[("window", "A04")]["bad"]


def test_bad_month_and_missing_db_are_clear_errors(tmp_path):
    proc = subprocess.run([HCP, "report", "monthly", "--month", "2026-13", "--db", str(tmp_path / "x.db")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no database" in proc.stderr and "Traceback" not in proc.stderr
    path = tmp_path / "hall.db"
    db.open_db(path).close()
    proc = subprocess.run([HCP, "report", "monthly", "--month", "11/2026", "--db", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "YYYY-MM" in proc.stderr and "Traceback" not in proc.stderr
