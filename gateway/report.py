"""The monthly 评价数据统计表: per department, window and staff member.

Counts per level, 好评 (3-5★) / 差评 (1-2★), satisfaction rate (好评 ÷ rated),
差评 reasons, invitation coverage (rated ÷ invited, where every invitation
ends as a rating or an unrated session; cancelled ones are not counted),
unrated sessions and uninvited presses (audit) — and the rules that call for
attention (docs/design.md §1):
- a staff member with 2 or more 差评 in the calendar year up to the month's end;
- a window whose 差评 share of this month's ratings exceeds 5%;
- a staff member who invites rarely: fewer invitations this month than
  `low_invite_ratio` (default 0.5) × the median of staff who invited at all.

Months are calendar months in hall local time (`tz_min` east of UTC, 480 for
China). The press time is the corrected `press_time`, else the receive time.
"""

import calendar
import datetime
import statistics
import time
from collections import Counter, defaultdict

LEVELS = (5, 4, 3, 2, 1)
LEVEL_NAMES = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}
BAD_SHARE_LIMIT = 0.05
BAD_PER_YEAR_LIMIT = 2


def local_day(now, tz_min=480):
    """(start of the local day, 'YYYY-MM') for Unix time `now`."""
    off = tz_min * 60
    start = (now + off) // 86400 * 86400 - off
    return start, time.strftime("%Y-%m", time.gmtime(now + off))


def month_bounds(month, tz_min=480):
    """'2026-11' -> (start, end) as Unix seconds of the local month."""
    try:
        year, mon = (int(x) for x in month.split("-"))
        first = datetime.datetime(year, mon, 1)
    except ValueError as err:
        raise ValueError("month must be YYYY-MM, got %r" % month) from err
    last_day = calendar.monthrange(year, mon)[1]
    end = first + datetime.timedelta(days=last_day)
    off = datetime.timedelta(minutes=tz_min)
    utc = datetime.timezone.utc
    return ((first - off).replace(tzinfo=utc).timestamp(), (end - off).replace(tzinfo=utc).timestamp())


def _rows(conn, start, end):
    """(kind, score, reasons, staff_id, window, count) of the events pressed in
    [start, end). SQLite groups them (with the GIL released), so Python
    tallies a few dozen rows, not every event of a busy day."""
    return conn.execute(
        "SELECT kind, score, reasons, staff_id, window, count(*) FROM events"
        " WHERE coalesce(press_time, received_at) >= ? AND coalesce(press_time, received_at) < ?"
        " GROUP BY kind, score, reasons, staff_id, window",
        (start, end)).fetchall()


class Tally:
    __slots__ = ("levels", "reasons", "unrated", "uninvited")

    def __init__(self):
        self.levels = Counter()
        self.reasons = Counter()
        self.unrated = 0
        self.uninvited = 0

    def add(self, kind, score, reasons, n=1):
        if kind == "rating":
            self.levels[score] += n
            for code in (reasons or "").split(","):
                if code:
                    self.reasons[code] += n
        elif kind == "unrated":
            self.unrated += n
        elif kind == "uninvited":
            self.uninvited += n

    def as_dict(self):
        rated = sum(self.levels.values())
        good = sum(self.levels[s] for s in (5, 4, 3))
        bad = rated - good
        invited = rated + self.unrated
        out = {LEVEL_NAMES[s]: self.levels[s] for s in LEVELS}
        out.update({
            "rated": rated, "good": good, "bad": bad,
            "satisfaction_rate": round(good / rated, 4) if rated else None,
            "bad_share": round(bad / rated, 4) if rated else None,
            "invited": invited, "coverage": round(rated / invited, 4) if invited else None,
            "unrated": self.unrated, "uninvited": self.uninvited,
            "reasons": dict(sorted(self.reasons.items())),
        })
        return out


def monthly(conn, month, dept_code="", tz_min=480, low_invite_ratio=0.5, windows_dept=None):
    """The statistics table and the rule breaches for `month` ('YYYY-MM')."""
    start, end = month_bounds(month, tz_min)
    windows_dept = windows_dept or {}
    groups = {"department": defaultdict(Tally), "window": defaultdict(Tally), "staff": defaultdict(Tally)}
    for kind, score, reasons, staff, window, n in _rows(conn, start, end):
        dept = windows_dept.get(window, dept_code)
        groups["department"][dept].add(kind, score, reasons, n)
        groups["window"][(dept, window)].add(kind, score, reasons, n)
        groups["staff"][(dept, window, staff)].add(kind, score, reasons, n)
    table = []
    for level in ("department", "window", "staff"):
        for key in sorted(groups[level]):
            key = key if isinstance(key, tuple) else (key,)
            row = {"level": level, "department": key[0],
                   "window": key[1] if len(key) > 1 else "", "staff": key[2] if len(key) > 2 else ""}
            row.update(groups[level][key if len(key) > 1 else key[0]].as_dict())
            table.append(row)

    breaches = []
    year_start, _ = month_bounds("%s-01" % month[:4], tz_min)
    bad_year = Counter()
    for (staff,) in conn.execute(
            "SELECT staff_id FROM events WHERE kind = 'rating' AND score <= 2"
            " AND coalesce(press_time, received_at) >= ? AND coalesce(press_time, received_at) < ?",
            (year_start, end)):
        bad_year[staff] += 1
    for staff, n in sorted(bad_year.items()):
        if n >= BAD_PER_YEAR_LIMIT:
            breaches.append({"rule": "staff_bad_per_year", "staff": staff, "value": n,
                             "limit": BAD_PER_YEAR_LIMIT,
                             "text": "%s has %d 差评 this year (≥ %d)" % (staff, n, BAD_PER_YEAR_LIMIT)})
    for row in table:
        if row["level"] == "window" and row["bad_share"] is not None and row["bad_share"] > BAD_SHARE_LIMIT:
            breaches.append({"rule": "window_bad_share", "window": row["window"], "value": row["bad_share"],
                             "limit": BAD_SHARE_LIMIT,
                             "text": "window %s: 差评 share %.1f%% > 5%%" % (row["window"], 100 * row["bad_share"])})
    invites = {row["staff"]: row["invited"] for row in table if row["level"] == "staff"}
    active = [n for n in invites.values() if n > 0]
    if active:
        floor = low_invite_ratio * statistics.median(active)
        for staff, n in sorted(invites.items()):
            if n < floor:
                breaches.append({"rule": "staff_low_invites", "staff": staff, "value": n, "limit": floor,
                                 "text": "%s invited %d times (< %.1f, half the median)" % (staff, n, floor)})
    return {"month": month, "rows": table, "breaches": breaches}


COLUMNS = [("level", "层级"), ("department", "部门"), ("window", "窗口"), ("staff", "工作人员")] + \
    [(LEVEL_NAMES[s], LEVEL_NAMES[s]) for s in LEVELS] + [
    ("rated", "评价数"), ("good", "好评"), ("bad", "差评"), ("satisfaction_rate", "满意率"),
    ("invited", "邀评数"), ("coverage", "覆盖率"), ("unrated", "未评价"), ("uninvited", "主动按键"),
    ("reasons", "差评原因")]


def flat_row(row):
    out = []
    for key, _ in COLUMNS:
        v = row[key]
        if key == "reasons":
            v = " ".join("%s×%d" % kv for kv in v.items())
        out.append("" if v is None else v)
    return out


# Staff ids, windows and reason codes come from devices and pairing requests:
# a spreadsheet must never read them as a formula (CSV injection, OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v):
    """A text cell that a spreadsheet would take for a formula (it starts with
    = + - @ TAB or CR) gets a leading single quote; numbers stay numbers."""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v
