"""Alerts: what the hall admin must act on, from the facts the dashboard gathers.

`evaluate(facts, cfg)` is pure: facts (below) and the `[alerts]` config in,
a list of alerts out, each a dict with a stable `id` (`rule/subject`), the
`rule`, a `severity` (critical | warning | info), a Chinese `text` for the
page, and the fields it is about (window, device_id, staff_id, value, limit).

Rules (thresholds from `[alerts]`, gateway/config.py):
    storage_alarm      the database refuses writes (critical)
    device_offline     a device offline for longer than offline_after_s (critical)
    stuck_button       a device reports a stuck button (warning)
    display_fault      a device reports that its panel does not answer (warning): it
                       still takes ratings, but citizens cannot see the prompt
    outbox_age         a target's oldest undelivered record is older than outbox_age_s (critical)
    bad_rating         each 差评 of today: call the citizen back the same day (warning)
    staff_bad_year     a staff member with >= staff_bad_per_year 差评 this year (warning)
    window_bad_share   a window whose 差评 share this month exceeds window_bad_share (warning)
    staff_low_invites  a staff member who invites rarely this month (info)

`AlertBook` keeps the active set: when each alert was first raised (kept in
the `alerts` table, so a restart does not reset it), when it cleared, and
publishes the changes (retained, one topic per alert; an empty retained
payload clears it) through a `publish(subtopic, payload)` callback.
"""

import json
import logging
import re
import sqlite3
import time

log = logging.getLogger("hcp.gateway.web.alerts")

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
KEEP_CLEARED_S = 90 * 86400  # cleared alerts stay in the table this long
_TOPIC_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")

# facts:
#   now            Unix s
#   alarm          None or {"since", "error"} (storage alarm)
#   devices        [{"device_id", "window", "staff_id", "staff_name", "online",
#                    "last_seen", "stuck_buttons", "display_fault"}]
#   targets        [{"name", "pending", "oldest_pending_age_s"}]
#   bad_today      [{"event_id", "at", "window", "staff_id", "staff_name", "score",
#                    "reasons": [label, ...]}]
#   bad_year       {staff_id: 差评 count this calendar year}
#   month_windows  [report row of level "window": "window", "bad", "rated", "bad_share"]
#   low_invites    [report breach "staff_low_invites": "staff", "value", "limit"]
#   staff_names    {staff_id: name}


def _alert(rule, subject, severity, text, **fields):
    a = {"id": "%s/%s" % (rule, subject), "rule": rule, "severity": severity, "text": text}
    a.update(fields)
    return a


def _who(staff_id, names):
    name = names.get(staff_id) or ""
    return "%s(%s)" % (name, staff_id) if name and staff_id else (staff_id or "未绑定")


def _ago(seconds):
    s = int(seconds)
    if s < 120:
        return "%d 秒" % s
    if s < 7200:
        return "%d 分钟" % (s // 60)
    return "%.1f 小时" % (s / 3600.0)


def evaluate(facts, cfg):
    """The active alerts for `facts` under `cfg` (config.Alerts)."""
    now = facts["now"]
    names = facts.get("staff_names", {})
    out = []
    alarm = facts.get("alarm")
    if alarm:
        out.append(_alert("storage_alarm", "db", "critical",
                          "数据库拒绝写入：%s（事件未确认，设备保留在日志中）" % alarm.get("error"),
                          since_hint=alarm.get("since")))
    for d in facts.get("devices", []):
        label = d.get("window") or d["device_id"]
        if not d.get("online"):
            last = d.get("last_seen")
            gone = None if last is None else now - last
            if gone is None or gone > cfg.offline_after_s:
                text = ("窗口 %s 评价器 %s 离线 %s" % (label, d["device_id"], _ago(gone)) if gone is not None
                        else "窗口 %s 评价器 %s 从未连接" % (label, d["device_id"]))
                out.append(_alert("device_offline", d["device_id"], "critical", text,
                                  device_id=d["device_id"], window=d.get("window", ""),
                                  value=gone, limit=cfg.offline_after_s))
        if cfg.stuck and d.get("stuck_buttons"):
            stars = "、".join("%d★" % s for s in d["stuck_buttons"])
            out.append(_alert("stuck_button", d["device_id"], "warning",
                              "窗口 %s 评价器 %s 按键卡住：%s" % (label, d["device_id"], stars),
                              device_id=d["device_id"], window=d.get("window", ""),
                              value=list(d["stuck_buttons"])))
        if d.get("display_fault") and d.get("online"):
            out.append(_alert("display_fault", d["device_id"], "warning",
                              "窗口 %s 评价器 %s 显示屏无响应：请检查屏幕连线" % (label, d["device_id"]),
                              device_id=d["device_id"], window=d.get("window", "")))
    for t in facts.get("targets", []):
        age = t.get("oldest_pending_age_s") or 0.0
        if t.get("pending") and age > cfg.outbox_age_s:
            out.append(_alert("outbox_age", t["name"], "critical",
                              "上传 %s：最早未送达记录已等待 %s（> %d 秒），积压 %d 条"
                              % (t["name"], _ago(age), cfg.outbox_age_s, t["pending"]),
                              target=t["name"], value=age, limit=cfg.outbox_age_s))
    if cfg.bad_rating:
        for b in facts.get("bad_today", []):
            reasons = "、".join(b.get("reasons") or []) or "未选原因"
            out.append(_alert("bad_rating", b["event_id"], "warning",
                              "差评 %d★ 窗口 %s %s %s：%s — 请当日回访"
                              % (b["score"], b.get("window") or "?", _who(b.get("staff_id"), names),
                                 time.strftime("%H:%M", time.gmtime(b["at"] + facts.get("tz_s", 0))),
                                 reasons),
                              window=b.get("window", ""), staff_id=b.get("staff_id", ""),
                              event_id=b["event_id"], value=b["score"], at=b["at"]))
    for staff, n in sorted(facts.get("bad_year", {}).items()):
        if staff and n >= cfg.staff_bad_per_year:
            out.append(_alert("staff_bad_year", staff, "warning",
                              "%s 本年度差评 %d 次（≥ %d）" % (_who(staff, names), n, cfg.staff_bad_per_year),
                              staff_id=staff, value=n, limit=cfg.staff_bad_per_year))
    for row in facts.get("month_windows", []):
        share = row.get("bad_share")
        if share is not None and share > cfg.window_bad_share:
            out.append(_alert("window_bad_share", row["window"] or "-", "warning",
                              "窗口 %s 本月差评占比 %.1f%%（%d/%d，> %.1f%%）"
                              % (row["window"] or "?", 100 * share, row["bad"], row["rated"],
                                 100 * cfg.window_bad_share),
                              window=row["window"], value=share, limit=cfg.window_bad_share))
    if cfg.low_invite_ratio > 0:
        for b in facts.get("low_invites", []):
            out.append(_alert("staff_low_invites", b["staff"] or "-", "info",
                              "%s 本月邀评 %d 次，低于 %.1f（同事中位数的 %d%%）"
                              % (_who(b["staff"], names), b["value"], b["limit"],
                                 round(100 * cfg.low_invite_ratio)),
                              staff_id=b["staff"], value=b["value"], limit=b["limit"]))
    return out


def topic_for(alert_id):
    """The MQTT subtopic of an alert: alert/<rule>/<subject>, subject made
    topic-safe (no wildcards, no extra levels)."""
    rule, _, subject = alert_id.partition("/")
    return "alert/%s/%s" % (rule, _TOPIC_SAFE.sub("_", subject) or "-")


def ordered(alerts):
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER.get(a["severity"], 9), -(a.get("since") or 0), a["id"]))


class AlertBook:
    """The active alerts, their history in the `alerts` table, and their
    MQTT topics. Used by one thread (the dashboard's)."""

    def __init__(self, conn, publish=None):
        self.conn = conn
        self.publish = publish  # fn(subtopic, payload bytes) or None
        self.active = {}  # id -> alert (with since)
        self.raised = 0
        self.cleared = 0
        self._unsent = {}  # subtopic -> payload not yet published
        self._published_epoch = None
        try:
            for aid, since, detail in conn.execute(
                    "SELECT id, since, detail FROM alerts WHERE cleared_at IS NULL"):
                a = json.loads(detail)
                a["since"] = since
                self.active[aid] = a
        except sqlite3.Error as err:
            log.warning("cannot load alerts: %s", err)

    def update(self, alerts, now=None):
        """Make `alerts` the active set; returns it ordered, each with `since`."""
        now = time.time() if now is None else now
        new = {a["id"]: a for a in alerts}
        raised, changed, gone = [], [], []
        for aid, a in new.items():
            old = self.active.get(aid)
            a["since"] = old["since"] if old else (a.pop("since_hint", None) or a.get("at") or now)
            a.pop("since_hint", None)
            if old is None:
                raised.append(a)
            elif old.get("text") != a["text"] or old.get("severity") != a["severity"]:
                changed.append(a)
        for aid in self.active:
            if aid not in new:
                gone.append(aid)
        self.active = new
        if raised or changed or gone:
            self._store(raised + changed, gone, now)
            for a in raised:
                log.warning("alert %s: %s", a["id"], a["text"])
            for aid in gone:
                log.info("alert %s cleared", aid)
            self.raised += len(raised)
            self.cleared += len(gone)
            for a in raised + changed:
                self._unsent[topic_for(a["id"])] = json.dumps(a, ensure_ascii=False).encode()
            for aid in gone:
                self._unsent[topic_for(aid)] = b""
        return ordered(self.active.values())

    def _store(self, upserts, gone, now):
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                for a in upserts:
                    c.execute("INSERT INTO alerts (id, rule, severity, since, cleared_at, detail)"
                              " VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (id) DO UPDATE SET"
                              " severity = excluded.severity, since = excluded.since,"
                              " cleared_at = NULL, detail = excluded.detail",
                              (a["id"], a["rule"], a["severity"], a["since"],
                               json.dumps(a, ensure_ascii=False)))
                c.executemany("UPDATE alerts SET cleared_at = ? WHERE id = ?", [(now, g) for g in gone])
                c.execute("DELETE FROM alerts WHERE cleared_at < ?", (now - KEEP_CLEARED_S,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:  # the page still shows them; the next change retries
            log.warning("cannot store alerts: %s", err)

    def flush(self, connected, epoch):
        """Publish what changed since the last flush; after a (re)connect
        (`epoch` changed) every active alert again. Returns how many sent."""
        if self.publish is None or not connected:
            return 0
        if epoch != self._published_epoch:
            self._published_epoch = epoch
            for a in self.active.values():
                self._unsent[topic_for(a["id"])] = json.dumps(a, ensure_ascii=False).encode()
        sent = 0
        for topic, payload in list(self._unsent.items()):
            try:
                self.publish(topic, payload)
            except Exception as err:  # paho refused (queue full): next tick
                log.warning("publishing %s: %s", topic, err)
                return sent
            del self._unsent[topic]
            sent += 1
        return sent

    def history(self, limit=50):
        """Recently cleared alerts, newest first."""
        try:
            rows = self.conn.execute("SELECT detail, since, cleared_at FROM alerts"
                                     " WHERE cleared_at IS NOT NULL ORDER BY cleared_at DESC LIMIT ?",
                                     (limit,)).fetchall()
        except sqlite3.Error:
            return []
        out = []
        for detail, since, cleared in rows:
            a = json.loads(detail)
            a["since"], a["cleared_at"] = since, cleared
            out.append(a)
        return out
