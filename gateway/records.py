"""Upstream records, built from a stored event and the invitation it answers
(docs/link.md "Upstream records", DESIGN.md §1).

Pure functions: no I/O, no clock. The commit thread calls `build()` inside the
transaction that stores the event, and queues one outbox row per record and
upstream target.
"""

import json
import time

# The wire score (protocol/README.md: 5 = 非常满意 ... 1 = 非常不满意) to the
# provincial `satisfaction` code (1 = 非常不满意 ... 5 = 非常满意). The two run
# the same way today; GB/T 39046's code table runs the other way, so a
# province that uses it changes this table and nothing else. THE one place.
SATISFACTION = {5: 5, 4: 4, 3: 3, 2: 2, 1: 1}


def event_id(device_id, boot, event_seq):
    return "%s:%d:%d" % (device_id, boot, event_seq)


def press_time(device_time, uptime_ms, boot, received_at, ref):
    """The moment of the press (Unix s) and how it was found.

    device_time: the device clock at the press (0 = never set).
    ref: (boot, uptime_ms, gateway_time) of the device's latest hello/health,
    or None. A device without a set clock still journals; its press time is
    the gateway's clock at `ref` moved by the uptime difference, valid only
    within the same boot (uptime restarts at every boot)."""
    if device_time:
        return float(device_time), "device"
    if ref is not None and ref[0] == boot:
        return ref[2] + (uptime_ms - ref[1]) / 1000.0, "uptime"
    return received_at, "received"


def local_time(ts, tz_offset_min):
    """`yyyy-MM-dd HH:mm:ss` in hall local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts + tz_offset_min * 60))


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
