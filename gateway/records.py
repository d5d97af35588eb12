"""Upstream records, built from a stored event and the invitation it answers
(docs/link.md "Upstream records", docs/design.md §1).

Pure functions: no I/O, no clock. The commit thread calls `build()` inside the
transaction that stores the event, and queues one outbox row per record and
upstream target.

What of a device's event the gateway believes, decided here too:
- `press_time()`: when the press happened. A device clock that cannot be
  right (before TIME_FLOOR, or more than FUTURE_TOLERANCE_S ahead of the
  moment the gateway received the event) is not used.
- `valid_reasons()`: which 差评 reason codes are kept. Only codes of the
  hall's catalogue (config `[device] reasons`) reach the events table, the
  records' `evalDetail` (codes joined by commas) and the monthly report.
"""

import json
import re
import time

# The wire score (protocol/README.md: 5 = 非常满意 ... 1 = 非常不满意) to the
# provincial `satisfaction` code (1 = 非常不满意 ... 5 = 非常满意). The two run
# the same way today; GB/T 39046's code table runs the other way, so a
# province that uses it changes this table and nothing else. THE one place.
SATISFACTION = {5: 5, 4: 4, 3: 3, 2: 2, 1: 1}


def event_id(device_id, boot, event_seq):
    return "%s:%d:%d" % (device_id, boot, event_seq)


# A device clock before this is not a clock that was ever set right
# (2020-01-01 00:00:00 UTC: older than this system).
TIME_FLOOR = 1577836800
# How far ahead of the gateway's clock at receipt a press may seem to be
# (the gateway sets device clocks; they drift by seconds, not minutes).
FUTURE_TOLERANCE_S = 300.0


def press_time(device_time, uptime_ms, boot, received_at, ref):
    """The moment of the press (Unix s) and how it was found: "device",
    "uptime" or "received" (`events.time_source`).

    device_time: the device clock at the press (0 = never set).
    received_at: the gateway's clock when the event arrived.
    ref: (boot, uptime_ms, gateway_time) of the device's latest hello/health,
    or None.

    The device clock is used when it is plausible: not before TIME_FLOOR and
    not more than FUTURE_TOLERANCE_S after `received_at` (a press cannot
    happen after its event arrived; an event journaled days ago and sent
    late keeps its time). A gateway whose own clock is before TIME_FLOOR
    (never set) cannot judge the future: it takes any device time from
    TIME_FLOOR on. Otherwise, as for a device whose clock was never set, the
    press time is the gateway's clock at `ref` moved by the uptime
    difference, valid only within the same boot (uptime restarts at every
    boot) and itself never after `received_at` + the tolerance; else the
    receive time. An event row whose device_time is not 0 and whose
    time_source is not "device" is one whose device clock was refused."""
    if device_time and device_time >= TIME_FLOOR and (
            device_time <= received_at + FUTURE_TOLERANCE_S or received_at < TIME_FLOOR):
        return float(device_time), "device"
    if ref is not None and ref[0] == boot:
        t = ref[2] + (uptime_ms - ref[1]) / 1000.0
        if t <= received_at + FUTURE_TOLERANCE_S:
            return t, "uptime"
    return received_at, "received"


# Never in a reason code: the comma separates codes in `evalDetail` and in
# events.reasons; control characters (C0, DEL, C1) have no place in a code.
_NOT_IN_CODE = re.compile("[,\x00-\x1f\x7f-\x9f]")


def valid_reasons(kind, score, reasons, catalogue):
    """(the reason codes to keep, how many were dropped) for one event.

    catalogue: the configured codes (`cfg.reason_codes`; a frozenset made
    once is the fast way). Only a 差评 (kind "rating", score 1 or 2) has
    reasons; of its codes those kept are the strings of the catalogue without
    a comma or a control character, each once, in the order sent. Every
    other code is dropped and counted, and so is any code on an event that
    is not a 差评. A 差评 none of whose codes is kept stays a 差评 with no
    reason (the catalogue has no "reason not given" code; R8 其他问题 is a
    citizen's choice): counted at its level, no reason counted or sent.
    The event itself is never refused here. Returns `reasons` itself when
    nothing is dropped."""
    if not reasons:
        return reasons, 0
    if kind != "rating" or score not in (1, 2):
        return [], len(reasons)
    kept = []
    for code in reasons:
        if type(code) is str and code in catalogue and code not in kept and not _NOT_IN_CODE.search(code):
            kept.append(code)
    if len(kept) == len(reasons):
        return reasons, 0
    return kept, len(reasons) - len(kept)


_local = {}  # ts + offset -> its text: press times repeat (devices' clocks tick in seconds)


def local_time(ts, tz_offset_min):
    """`yyyy-MM-dd HH:mm:ss` in hall local time."""
    t = ts + tz_offset_min * 60
    text = _local.get(t)
    if text is None:
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
        if len(_local) >= 4096:
            _local.clear()
        _local[t] = text
    return text


def build(ev, invitation, hall):
    """Records for one event (a dict with the events-table columns).

    invitation: dict with `cases` (list of case dicts), `staff_id`, `window`.
    hall: gateway.config.Hall. Returns [(idempotency_key, record_dict), ...];
    empty for uninvited presses (audit only, never a record)."""
    if ev["kind"] == "uninvited":
        return []
    rated = ev["kind"] == "rating"
    eid = ev["event_id"]
    # What every case of the invitation shares, built once.
    base = {
        "assessNumber": 1,
        "evalDetail": ev["reasons"] if rated else "",
        "pf": hall.pf,
        "assessTime": local_time(ev["press_time"], hall.tz_offset_min),
        "areaCode": hall.areaCode,
        "deptCode": hall.deptCode,
        "proManager": invitation["staff_id"],
        "windowId": invitation["window"],
        "deviceId": ev["device_id"],
        "eventId": eid,
        "rated": rated,
    }
    if rated:
        base["satisfaction"] = SATISFACTION[ev["score"]]
    out = []
    for i, case in enumerate(invitation["cases"], 1):
        key = "%s/%d" % (eid, i)
        rec = {"projectNo": case["projectNo"], "serviceNumber": case.get("serviceNumber", ""),
               "taskCode": case.get("taskCode", "")}
        rec.update(base)
        rec["idempotencyKey"] = key
        # Other case fields the counter system gave (e.g. the matter's name)
        # pass through unless they would overwrite ours.
        for k, v in case.items():
            if k not in rec:
                rec[k] = v
        out.append((key, rec))
    return out


def dumps(rec):
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"))


# --- the records' JSON text, built without the dicts (the commit thread) ---

_ENC = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_str = json.encoder.encode_basestring  # what that encoder writes for a str (ensure_ascii=False)
_OURS = frozenset(("projectNo", "serviceNumber", "taskCode", "assessNumber", "evalDetail", "pf",
                   "assessTime", "areaCode", "deptCode", "proManager", "windowId", "deviceId",
                   "eventId", "rated", "idempotencyKey"))
_OURS_RATED = _OURS | {"satisfaction"}


def _val(v):
    return _str(v) if type(v) is str else _ENC.encode(v)


def texts(eid, device_id, kind, score, reasons, press_time, cases, staff_id, window, hall):
    """[(idempotency_key, record JSON), ...]: exactly
    [(k, dumps(r)) for k, r in build(ev, {"cases", "staff_id", "window"}, hall)]
    for ev = {"event_id": eid, "device_id", "kind", "score", "reasons", "press_time"}
    (tests/test_gateway_records.py compares both), written field by field with
    the C string encoder instead of a dict per record and a JSON encoder per
    record. Anything unusual (a case that is not a dict of str keys, a score
    outside the map, not a list of cases) is left to build()/dumps(), which
    give the record or raise as before."""
    if kind == "uninvited":
        return []
    rated = kind == "rating"
    if type(cases) is not list or (rated and score not in SATISFACTION):
        return _texts_reference(eid, device_id, kind, score, reasons, press_time, cases, staff_id, window, hall)
    mid = "".join((
        ',"assessNumber":1,"evalDetail":', _val(reasons) if rated else '""',
        ',"pf":', _val(hall.pf),
        ',"assessTime":', _str(local_time(press_time, hall.tz_offset_min)),
        ',"areaCode":', _val(hall.areaCode), ',"deptCode":', _val(hall.deptCode),
        ',"proManager":', _val(staff_id), ',"windowId":', _val(window),
        ',"deviceId":', _val(device_id), ',"eventId":', _val(eid),
        ',"rated":true,"satisfaction":%s,"idempotencyKey":' % _ENC.encode(SATISFACTION[score]) if rated
        else ',"rated":false,"idempotencyKey":'))
    ours = _OURS_RATED if rated else _OURS
    out = []
    for i, case in enumerate(cases, 1):
        if type(case) is not dict or "projectNo" not in case:
            return _texts_reference(eid, device_id, kind, score, reasons, press_time, cases, staff_id, window,
                                    hall)
        key = "%s/%d" % (eid, i)
        parts = ['{"projectNo":', _val(case["projectNo"]),
                 ',"serviceNumber":', _val(case.get("serviceNumber", "")),
                 ',"taskCode":', _val(case.get("taskCode", "")), mid, _str(key)]
        if len(case) > 1:
            for k, v in case.items():
                if k in ours:
                    continue
                if type(k) is not str:
                    return _texts_reference(eid, device_id, kind, score, reasons, press_time, cases, staff_id,
                                            window, hall)
                parts.append(",")
                parts.append(_str(k))
                parts.append(":")
                parts.append(_val(v))
        parts.append("}")
        out.append((key, "".join(parts)))
    return out


def _texts_reference(eid, device_id, kind, score, reasons, press_time, cases, staff_id, window, hall):
    ev = {"event_id": eid, "device_id": device_id, "kind": kind, "score": score, "reasons": reasons,
          "press_time": press_time}
    return [(k, dumps(r)) for k, r in build(ev, {"cases": cases, "staff_id": staff_id, "window": window}, hall)]
