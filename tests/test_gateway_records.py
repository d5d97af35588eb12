"""Upstream records from events: provincial field names, one per case, the
satisfaction map, hall local time, press time from uptime."""

from gateway import records
from gateway.config import Hall

HALL = Hall(id="h", areaCode="330100", deptCode="D1", pf="5", tz_offset_min=480)
INV = {"cases": [{"projectNo": "P1", "serviceNumber": "N1", "taskCode": "T1", "itemName": "x"},
                 {"projectNo": "P2"}], "staff_id": "S9", "window": "A01"}


def ev(kind, score, reasons="", t=1795000000.0):
    return {"event_id": "EV-1:7:41", "device_id": "EV-1", "kind": kind, "score": score,
            "reasons": reasons, "press_time": t}


def test_one_record_per_case_with_the_same_score():
    out = records.build(ev("rating", 1, "R1,R3"), INV, HALL)
    assert [k for k, _ in out] == ["EV-1:7:41/1", "EV-1:7:41/2"]
    a, b = (r for _, r in out)
    assert a["projectNo"] == "P1" and b["projectNo"] == "P2"
    assert a["satisfaction"] == b["satisfaction"] == 1 and a["evalDetail"] == b["evalDetail"] == "R1,R3"
    assert a["serviceNumber"] == "N1" and a["taskCode"] == "T1" and a["itemName"] == "x"
    assert b["serviceNumber"] == "" and b["taskCode"] == ""
    assert a["assessTime"] == "2026-11-18 19:06:40"  # 1795000000 = 2026-11-18 11:06:40 UTC, +8 h
    assert a["pf"] == "5" and a["areaCode"] == "330100" and a["deptCode"] == "D1"
    assert a["proManager"] == "S9" and a["windowId"] == "A01" and a["deviceId"] == "EV-1"
    assert a["assessNumber"] == 1 and a["rated"] is True and a["eventId"] == "EV-1:7:41"


def test_satisfaction_map_is_explicit_and_complete():
    assert records.SATISFACTION == {5: 5, 4: 4, 3: 3, 2: 2, 1: 1}
    for s in range(1, 6):
        (_, r), _ = records.build(ev("rating", s, "R1" if s <= 2 else ""), INV, HALL)
        assert r["satisfaction"] == records.SATISFACTION[s]


def test_unrated_has_no_satisfaction_and_uninvited_no_record():
    (_, r), _ = records.build(ev("unrated", 0), INV, HALL)
    assert r["rated"] is False and "satisfaction" not in r and r["evalDetail"] == ""
    assert records.build(ev("uninvited", 5), INV, HALL) == []


def test_case_fields_never_overwrite_ours():
    inv = dict(INV, cases=[{"projectNo": "P1", "satisfaction": "9", "idempotencyKey": "x"}])
    ((key, r),) = records.build(ev("rating", 4), inv, HALL)
    assert r["satisfaction"] == 4 and r["idempotencyKey"] == key == "EV-1:7:41/1"


def test_press_time():
    assert records.press_time(1795000000, 5000, 7, 1.0, None) == (1795000000.0, "device")
    # Clock never set: the gateway's time at the last hello/health moved by the uptime difference.
    assert records.press_time(0, 65_000, 7, 2000.0, (7, 60_000, 1000.0)) == (1005.0, "uptime")
    assert records.press_time(0, 1_000, 7, 2000.0, (7, 60_000, 1000.0)) == (941.0, "uptime")
    # Another boot's uptime says nothing about now: the receive time.
    assert records.press_time(0, 65_000, 6, 2000.0, (7, 60_000, 1000.0)) == (2000.0, "received")
    assert records.press_time(0, 65_000, 6, 2000.0, None) == (2000.0, "received")
