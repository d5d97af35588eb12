"""The hall admin's dashboard: the page (gateway/web/), `GET /api/dashboard`,
`GET /api/alerts`, `GET /metrics`.

One thread computes a snapshot about once a second, on its own read
connection, and the HTTP handlers only hand the last one out: any number of
open pages cost one computation, and nothing here touches the commit
thread's connection. The snapshot has

    windows    one tile per device (bound window first): online, staff, last
               rating, journal depth, outbox depth, firmware, stuck buttons,
               clock offset, problems - tiles with problems first
    today      per window and per staff: counts per level, satisfaction rate,
               差评 reasons, coverage (rated / invited), unrated, uninvited
    month      the same for the month, from gateway.report.monthly()
    bad_today  today's 差评 with their reasons (call-backs), the latest BAD_TODAY_SHOWN
    series     ratings per hour today and per day this month (good / bad)
    upstream   per target: link, backlog, oldest undelivered age, rate,
               errors; the records the upstream refused, with reasons
    alerts     the active alerts (gateway.web.alerts), worst first

The figures of today and the month are a scan of their events: they are
recomputed only when new events were committed or records delivered (or
every REFRESH_S), today's at most every 10x the time their last computation
took, the month's (gateway.report.monthly, the costly part: ~300 ms for
100k events here, a Python loop that holds the GIL) at most every 2 s and
50x its cost, so a big month, a backlog of millions or a benchmark's event
rate do not turn the dashboard into the gateway's main load. (Measured with
a seeded 100k-event month and 30 pty devices x 10 ev/s in one process: the
month recomputation raises ACK p99 while it runs; incremental month tallies
would remove that.)
"""

import dataclasses
import json
import logging
import os
import re
import sqlite3
import threading
import time

from gateway import report
from gateway.devices import invitations
from gateway.errors import GatewayError
from gateway.store import outbox
from gateway.web import alerts as _alerts
from gateway.web import metrics as _metrics

log = logging.getLogger("hcp.gateway.web.dashboard")

WEB_DIR = os.path.dirname(os.path.abspath(__file__))  # the page is beside this module
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(html|js|css|svg)$")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}
TICK_S = 1.0
MONTH_COST_FACTOR = 50  # the month's figures: at most every 2 s and 50x their cost
DAY_COST_FACTOR = 10  # today's and the outbox's: at most every 10x their cost
REFRESH_S = 30.0  # figures are recomputed at least this often (the clock moves on)
REJECTED_SHOWN = 20
_T = "coalesce(press_time, received_at)"  # when a press happened (gateway/report.py)


class Raw:
    """A non-JSON answer of the API (the page, its files, /metrics)."""

    def __init__(self, body, content_type):
        self.body = body if isinstance(body, bytes) else body.encode()
        self.content_type = content_type


def static(path):
    """Raw for '/', '/dashboard' and '/web/<file>' (no token needed: the page
    shows nothing until it has one), else None."""
    p = path.strip("/")
    if p in ("", "dashboard"):
        name = "index.html"
    elif p.startswith("web/") and _STATIC_NAME.match(p[4:]):
        name = p[4:]
    else:
        return None
    try:
        with open(os.path.join(WEB_DIR, name), "rb") as f:
            return Raw(f.read(), _TYPES[name.rsplit(".", 1)[1]])
    except OSError:
        return None


class Dashboard(threading.Thread):
    def __init__(self, gw, conn, tick_s=TICK_S):
        super().__init__(name="hcp-dashboard", daemon=True)
        self.gw = gw
        self.conn = conn  # read connection of this thread (and the alerts table)
        self.tick_s = tick_s
        self.metrics = _metrics.Metrics()
        self.book = _alerts.AlertBook(conn, publish=self._publish if gw.cfg.alerts.mqtt else None)
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._snapshot = None
        # the figures that scan events (module docstring)
        p = params(gw.cfg)
        self._month = _Cache(lambda month: read(conn, "month", month, p), MONTH_COST_FACTOR, 2.0)
        self._day = _Cache(lambda day_start: read(conn, "day", day_start, p), DAY_COST_FACTOR)
        # Nobody looking at the page: the figures that scan events are only
        # needed by the alert rules, which can wait a minute. Under a heavy
        # ingest this keeps the event scans off the GIL the ACKs need.
        self._viewed = -UNWATCHED_AFTER_S  # nobody has looked yet
        self._stale = None  # {"since", "error"} while the database cannot be read (run())
        self._bugs = {}  # message -> when its traceback was logged (run())

    # --- for the API -------------------------------------------------------
    def snapshot(self):
        self._viewed = time.monotonic()
        with self._lock:
            snap = self._snapshot
        if snap is None:  # before the first tick: wait for it briefly
            deadline = time.monotonic() + 3.0
            while snap is None and time.monotonic() < deadline and self.is_alive():
                time.sleep(0.02)
                with self._lock:
                    snap = self._snapshot
        if snap is None:
            return {"error": "dashboard not ready"}
        return snap

    def alerts(self):
        snap = self.snapshot()
        return {"alerts": snap.get("alerts", []), "now": snap.get("now")}

    def metrics_text(self):
        gw = self.gw
        snap = self._snapshot or {}
        fws = {}
        for name, f in gw.forwarders.items():
            try:
                fws[name] = f.status()
            except Exception as err:  # a forwarder that cannot say: no figures for it
                log.warning("forwarder %s status: %s", name, err)
        devs = gw.registry.all()
        facts = {"ingest": dict(gw.committer.stats), "queued": gw.committer.q.qsize(),
                 "alarm": gw.committer.alarm, "rejected": dict(gw.registry.rejected),
                 "frames": sum(d.frames for d in devs), "devices": len(devs),
                 "online": sum(1 for d in devs if d.online), "forwarders": fws,
                 "outbox": {t["name"]: t for t in snap.get("upstream", {}).get("targets", [])},
                 "alerts": snap.get("alerts", []), "invitations_expired": gw.invitations.expired}
        return Raw(_metrics.render(facts, self.metrics.ack_latency), _metrics.CONTENT_TYPE)

    # --- the thread --------------------------------------------------------
    def stop(self, timeout=5.0):
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def run(self):
        """tick() every tick_s. A database that cannot be read (damaged
        pages, an I/O error: sqlite3.Error) is logged once per message, and
        once when it reads again; the page keeps the last snapshot, marked
        `stale`. Anything else is a bug: its traceback at most once per
        message per BUG_LOG_S."""
        while True:
            try:
                self.tick()
            except (sqlite3.Error, GatewayError) as err:
                self._trouble(err)
            except Exception as err:
                self._bug(err)
            if self._halt.wait(self.tick_s):
                break

    def _trouble(self, err):
        """The figures cannot be read: say so once per message; mark the last
        snapshot stale (it is still served)."""
        msg = str(err) or type(err).__name__
        if self._stale is None or self._stale["error"] != msg:
            log.warning("dashboard: cannot read the database: %s; the page shows the last figures,"
                        " marked stale, until it reads again", msg)
        since = self._stale["since"] if self._stale is not None else time.time()
        self._stale = {"since": since, "error": msg}
        self._mark_stale(self._stale)

    def _mark_stale(self, stale):
        with self._lock:
            if self._snapshot is not None:
                self._snapshot = dict(self._snapshot, stale=dict(stale))

    def _recovered(self):
        if self._stale is not None:
            log.warning("dashboard: the database reads again after %.0f s", time.time() - self._stale["since"])
            self._stale = None

    def _bug(self, err):
        """A traceback per distinct message at most every BUG_LOG_S."""
        msg = "%s: %s" % (type(err).__name__, err)
        now = time.monotonic()
        for m in [m for m, t in self._bugs.items() if now - t >= BUG_LOG_S]:
            del self._bugs[m]
        if msg not in self._bugs:
            self._bugs[msg] = now
            log.exception("dashboard tick (logged once a minute at most while it repeats)")
        old = (self._snapshot or {}).get("stale")
        self._mark_stale({"since": old["since"] if old else time.time(), "error": msg})

    def tick(self, now=None):
        now = time.time() if now is None else now
        watched = time.monotonic() - self._viewed < UNWATCHED_AFTER_S
        # The month's scan is the heavy one, and its rules (5% share, 2 a
        # year, low invitations) can wait a minute; today's figures (差评
        # call-backs, the outbox depth in /metrics) come every few seconds.
        self._month.min_s = 2.0 if watched else UNWATCHED_REFRESH_S
        self._day.min_s = 0.0 if watched else UNWATCHED_DAY_S
        snap = self.compute(now)
        facts = snap.pop("_facts")
        snap["alerts"] = self.book.update(_alerts.evaluate(facts, self.gw.cfg.alerts), now)
        snap["alerts_cleared"] = self.book.history(10)
        mq = self.gw.mqtt
        if mq is not None:
            self.book.flush(mq.connected, mq.connects)
        # Figures a cache kept because the database refused them: stale.
        failed = self._month.failed or self._day.failed
        if failed is not None:
            self._trouble(failed)
        else:
            self._recovered()
        snap["stale"] = None if self._stale is None else dict(self._stale)
        with self._lock:
            self._snapshot = snap
        return snap

    def _publish(self, subtopic, payload):
        mq = self.gw.mqtt
        info = mq.client.publish(mq.topic(subtopic), payload, qos=1, retain=True)
        if info.rc != 0:
            raise OSError("publish rc %s" % info.rc)

    # --- computing ---------------------------------------------------------
    def compute(self, now):
        gw, cfg = self.gw, self.gw.cfg
        tz_min = cfg.hall.tz_offset_min
        day_start, month = report.local_day(now, tz_min)
        fig = self._figures_for(now, day_start, month)
        devices = sorted(gw.registry.all(), key=lambda d: d.device_id)
        names = {}
        tiles = []
        for dev in devices:
            s = dev.summary()
            s["staff_name"] = (dev.binding or {}).get("staff_name", "")
            if s["staff_id"]:
                names[s["staff_id"]] = s["staff_name"]
            s["last_rating_at"] = fig["last_rating"].get(dev.device_id)
            s["outbox_pending"] = fig["pending_by_device"].get(dev.device_id, 0)
            s["problems"] = _problems(s, now)
            tiles.append(s)
        tiles.sort(key=lambda s: (_worst(s["problems"]), not s["window"], s["window"], s["device_id"]))
        fws = {}
        for name, f in gw.forwarders.items():
            try:
                fws[name] = f.status()
            except Exception as err:
                fws[name] = {"error": str(err)}
        targets = []
        for up in cfg.upstreams:
            st = dict(fig["outbox"].get(up.name, {"pending": 0, "rejected": 0, "oldest_pending_age_s": 0.0}))
            f = fws.get(up.name, {})
            if st["pending"]:  # the age now, not when the figures were read
                st["oldest_pending_age_s"] += now - fig["day_at"]
            st.update(name=up.name, kind=up.kind, connected=bool(f.get("connected")),
                      rate=f.get("rate", 0.0), errors=f.get("errors", 0), last_error=f.get("last_error"),
                      delivered_total=f.get("delivered", 0))
            targets.append(st)
        hist = self.metrics.ack_latency
        p50, p99 = hist.quantile(0.5), hist.quantile(0.99)
        snap = {
            "now": now, "hall": cfg.hall.id, "session": gw.session, "started_at": gw.started_at,
            "tz_offset_min": tz_min, "day_start": day_start, "month": month,
            "alarm": gw.committer.alarm,
            "gateway": {"events": gw.committer.stats["events"], "queued": gw.committer.q.qsize(),
                        "devices": len(tiles), "online": sum(1 for t in tiles if t["online"]),
                        "ack_p50_ms": None if p50 is None else round(1000 * p50, 2),
                        "ack_p99_ms": None if p99 is None else round(1000 * p99, 2),
                        "mqtt": None if gw.mqtt is None else bool(gw.mqtt.connected)},
            "windows": tiles,
            "today": fig["today"], "month_figures": fig["month"], "bad_today": fig["bad_today"],
            "series": {"hourly": fig["hourly"], "daily": fig["daily"]}, "figures_at": fig["at"],
            "upstream": {"targets": targets, "rejected": fig["rejected"]},
            "reasons": {code: label for code, label in cfg.device.reasons},
            "limits": dataclasses.asdict(cfg.alerts),
        }
        names.update(fig["staff_names"])
        snap["staff_names"] = names
        snap["_facts"] = {
            "now": now, "alarm": gw.committer.alarm, "devices": tiles, "targets": targets,
            "bad_today": fig["bad_today"], "bad_year": fig["bad_year"],
            "month_windows": [r for r in fig["month"]["rows"] if r["level"] == "window"],
            "low_invites": [b for b in fig["month"]["breaches"] if b["rule"] == "staff_low_invites"],
            "staff_names": names, "tz_s": tz_min * 60,
        }
        return snap

    def _figures_for(self, now, day_start, month):
        moved = 0
        for f in self.gw.forwarders.values():
            st = f.status()
            moved += (st.get("delivered") or 0) + (st.get("rejected") or 0)
        events = self.gw.committer.stats["events"]
        fig = dict(self._month.get((events, month), now, month))
        expired = self.gw.invitations.expired  # today's "no answer" moved
        fig.update(self._day.get((events, day_start, moved, expired), now, day_start))
        fig["at"], fig["day_at"] = min(self._month.at, self._day.at), self._day.at
        return fig


def read(conn, name, *args):
    """READERS[name](conn, *args) in one read transaction: its figures all
    from the same committed state."""
    conn.execute("BEGIN")
    try:
        out = READERS[name](conn, *args)
    except BaseException:
        # The reader's error is the one to see: SQLite may have rolled the
        # transaction back already (an I/O error), so a COMMIT here would
        # fail again ("no transaction is active") and hide it.
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    conn.execute("COMMIT")
    return out


def read_month(c, month, p):
    """The month's figures; p = params(cfg)."""
    tz_min = p["tz_min"]
    month_tab = report.monthly(c, month, dept_code=p["dept"], tz_min=tz_min,
                               low_invite_ratio=p["low_invite_ratio"])
    m_start, m_end = report.month_bounds(month, tz_min)
    y_start, _ = report.month_bounds(month[:4] + "-01", tz_min)
    bad_year = dict(c.execute(
        "SELECT staff_id, count(*) FROM events WHERE kind = 'rating' AND score <= 2"
        " AND %s >= ? AND %s < ? GROUP BY staff_id" % (_T, _T), (y_start, m_end)).fetchall())
    daily = _series(c, m_start, 86400, int(round((m_end - m_start) / 86400)))
    return {"month": month_tab, "bad_year": bad_year, "daily": daily}


def read_day(c, day_start, p):
    """Today's figures, the outbox and the devices' last ratings."""
    labels = dict(p["reasons"])
    today = _today(c, day_start)
    # Invitations no answer came for (the device was off, or never got it).
    today["expired"] = invitations.by_state(c, day_start, day_start + 86400).get("expired", 0)
    bad_today = [
        {"event_id": eid, "at": at, "device_id": dev, "window": win, "staff_id": staff,
         "score": score, "codes": [x for x in (reasons or "").split(",") if x],
         "reasons": [labels.get(x, x) for x in (reasons or "").split(",") if x]}
        for eid, at, dev, win, staff, score, reasons in c.execute(
            "SELECT event_id, %s, device_id, window, staff_id, score, reasons FROM events"
            " WHERE kind = 'rating' AND score <= 2 AND %s >= ? AND %s < ? ORDER BY %s DESC LIMIT ?"
            % (_T, _T, _T, _T), (day_start, day_start + 86400, BAD_TODAY_SHOWN))]
    last_rating = {}
    for (dev,) in c.execute("SELECT device_id FROM devices"):
        row = c.execute("SELECT %s FROM events WHERE device_id = ? AND kind = 'rating'"
                        " ORDER BY id DESC LIMIT 1" % _T, (dev,)).fetchone()
        if row:
            last_rating[dev] = row[0]
    pending_by_device = dict(c.execute(
        "SELECT device_id, count(*) FROM outbox WHERE state = 0 GROUP BY device_id").fetchall())
    ob = {name: outbox.stats(c, name) for name in p["targets"]}
    rejected = []
    for rid, target, key, eid, dev, record, attempts, error in outbox.rejected(c, limit=REJECTED_SHOWN):
        try:
            rec = json.loads(record)
        except ValueError:
            rec = {}
        rejected.append({"id": rid, "target": target, "key": key, "event_id": eid, "device_id": dev,
                         "projectNo": rec.get("projectNo", ""), "window": rec.get("windowId", ""),
                         "satisfaction": rec.get("satisfaction"), "attempts": attempts,
                         "error": error or ""})
    staff_names = dict(c.execute("SELECT staff_id, staff_name FROM bindings").fetchall())
    return {"today": today, "bad_today": bad_today, "hourly": _series(c, day_start, 3600, 24),
            "last_rating": last_rating, "pending_by_device": pending_by_device, "outbox": ob,
            "rejected": rejected, "staff_names": staff_names}


READERS = {"month": read_month, "day": read_day}


def params(cfg):
    """What the readers need of the config."""
    return {"tz_min": cfg.hall.tz_offset_min, "dept": cfg.hall.deptCode,
            "low_invite_ratio": cfg.alerts.low_invite_ratio or 0.0,
            "reasons": [list(r) for r in cfg.device.reasons], "targets": [u.name for u in cfg.upstreams]}


BAD_TODAY_SHOWN = 100  # a hall has a handful a day; a flood must not cost every refresh
UNWATCHED_AFTER_S = 30.0  # no /api/dashboard request for this long: nobody is watching
UNWATCHED_REFRESH_S = 60.0  # then the month's scan at most this often (its alert rules' pace)
UNWATCHED_DAY_S = 3.0  # and today's figures at most this often (差评 alerts, /metrics)
BUG_LOG_S = 60.0  # a failing tick's traceback: once per message this often at most


class _Cache:
    """Figures recomputed when their key changes (or every REFRESH_S, the
    clock moves on), but never sooner than `factor` x the last computation's
    cost, nor than `min_s`, after it: a big month or a benchmark's event rate
    cannot make the dashboard the gateway's main load."""

    def __init__(self, fn, factor, min_s=0.0):
        self.fn = fn
        self.factor = factor
        self.min_s = min_s
        self.value = None
        self.key = None
        self.at = 0.0  # wall time of the inputs
        self.cost = 0.0
        self.mono = 0.0
        self.runs = 0
        self.failed = None  # the error of the last computation, None if it worked

    def get(self, key, now, *args):
        if self.value is not None:
            wait = max(self.min_s, self.factor * self.cost)
            due = key != self.key or now - self.at >= REFRESH_S
            if not due or time.monotonic() - self.mono < wait:
                return self.value
        t0 = time.monotonic()
        try:
            self.value = self.fn(*args)
        except (sqlite3.Error, GatewayError) as err:
            # Kept: the last value; the dashboard says it is stale and logs
            # the error (once). Retried no sooner than a computation would be.
            self.failed = err
            self.mono = t0
            if self.value is None:
                raise
            return self.value
        self.failed = None
        self.cost = time.monotonic() - t0
        self.mono, self.key, self.at = t0, key, now
        self.runs += 1
        return self.value


def _today(conn, day_start):
    """Today's figures per window and per staff member, with the report's Tally."""
    total = report.Tally()
    windows, staff = {}, {}
    for kind, score, reasons, staff_id, window, n in report._rows(conn, day_start, day_start + 86400):
        total.add(kind, score, reasons, n)
        windows.setdefault(window, report.Tally()).add(kind, score, reasons, n)
        staff.setdefault((window, staff_id), report.Tally()).add(kind, score, reasons, n)
    rows = [dict(total.as_dict(), level="total", window="", staff="")]
    rows += [dict(windows[w].as_dict(), level="window", window=w, staff="") for w in sorted(windows)]
    rows += [dict(staff[k].as_dict(), level="staff", window=k[0], staff=k[1]) for k in sorted(staff)]
    return {"rows": rows}


def _series(conn, start, step, n):
    """[[good, bad], ...] ratings per step from start, n buckets."""
    out = [[0, 0] for _ in range(n)]
    t = "coalesce(press_time, received_at)"
    for i, bad, count in conn.execute(
            "SELECT CAST((%s - ?) / ? AS INTEGER), score <= 2, count(*) FROM events"
            " WHERE kind = 'rating' AND %s >= ? AND %s < ? GROUP BY 1, 2" % (t, t, t),
            (start, step, start, start + step * n)):
        if 0 <= i < n:
            out[i][1 if bad else 0] += count
    return out


def _worst(problems):
    """Sort rank of a tile: critical 0, warning 1, anything else 2."""
    return min([{"critical": 0, "warning": 1}.get(sev, 2) for sev, _ in problems] or [2])


def _problems(s, now):
    """What is wrong with one device, worst first: [(severity, text)]."""
    out = []
    if not s["online"]:
        out.append(["critical", "离线"])
    if not s["window"]:
        out.append(["warning", "未绑定窗口"])
    if s["stuck_buttons"]:
        out.append(["warning", "按键卡住 " + " ".join("%d★" % x for x in s["stuck_buttons"])])
    if s.get("display_fault"):
        out.append(["warning", "显示屏无响应"])
    if s["clock_offset_s"] is not None and abs(s["clock_offset_s"]) > 2:
        out.append(["warning", "时钟偏差 %+.0f 秒" % s["clock_offset_s"]])
    depth = s.get("journal_depth") or 0
    if depth > 0 and s["online"]:
        out.append(["info", "设备日志待确认 %d" % depth])
    if s["paired"] and not s["key_confirmed"]:
        out.append(["info", "密钥未确认"])
    return out
