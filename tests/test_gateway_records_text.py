"""gateway/records.py `texts` (the records' JSON built field by field, what the
commit thread queues) against the reference `build` + `dumps`: the same keys
and the same text, byte for byte, for any event and invitation; the same
exception where the reference raises (a poison invitation)."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import records
from gateway.config import Hall

HALLS = [Hall(id="h", areaCode="330100", deptCode="D1", pf="5", tz_offset_min=480),
         Hall(id="h2", areaCode="区\"\\/\u2028", deptCode="", pf="x\n", tz_offset_min=-90)]
OURS = ["projectNo", "serviceNumber", "taskCode", "assessNumber", "evalDetail", "pf", "assessTime", "areaCode",
        "deptCode", "proManager", "windowId", "deviceId", "eventId", "rated", "satisfaction", "idempotencyKey"]


def reference(eid, device_id, kind, score, reasons, press_time, cases, staff_id, window, hall):
    ev = {"event_id": eid, "device_id": device_id, "kind": kind, "score": score, "reasons": reasons,
          "press_time": press_time}
    try:
        return [(k, records.dumps(r)) for k, r in records.build(ev, {"cases": cases, "staff_id": staff_id,
                                                                   "window": window}, hall)]
    except Exception as err:
        return ("raised", type(err))


def fast(*args):
    try:
        return records.texts(*args)
    except Exception as err:
        return ("raised", type(err))


def same(*args):
    want = reference(*args)
    assert fast(*args) == want
    return want


texts_st = st.text(max_size=8)
json_vals = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | texts_st,
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(texts_st, c, max_size=3),
                         max_leaves=6)
case_st = st.dictionaries(st.one_of(st.sampled_from(OURS + ["itemName", "x"]), texts_st), json_vals, max_size=5)
cases_st = st.lists(st.one_of(
    st.builds(lambda pn, rest: dict({"projectNo": pn}, **rest), texts_st, case_st),
    st.builds(lambda rest, pn: dict(rest, projectNo=pn), case_st, json_vals),
    case_st), min_size=0, max_size=4)


@settings(max_examples=600, deadline=None)
@given(kind=st.sampled_from(["rating", "unrated", "uninvited"]), score=st.integers(-1, 6),
       reasons=texts_st, t=st.one_of(st.integers(0, 4_000_000_000).map(float),
                                     st.floats(0, 4e9, allow_nan=False)),
       cases=cases_st, staff=texts_st, window=texts_st, dev=texts_st, eid=texts_st,
       hall=st.sampled_from(HALLS))
def test_texts_are_the_reference_records(kind, score, reasons, t, cases, staff, window, dev, eid, hall):
    same(eid, dev, kind, score, reasons, t, cases, staff, window, hall)


def test_as_the_load_makes_them():
    for hall in HALLS:
        for kind, score, reasons in (("rating", 5, ""), ("rating", 1, "R1,R3"), ("unrated", 0, ""),
                                     ("uninvited", 4, "")):
            for cases in ([{"projectNo": "330100-2026-0001000001"}],
                          [{"projectNo": "P", "serviceNumber": "N", "taskCode": "T", "itemName": "办证"},
                           {"projectNo": "P-2"}]):
                got = same("LD-0001:1:5", "LD-0001", kind, score, reasons, 1795000000.0, cases, "S1001", "W001",
                           hall)
                assert kind == "uninvited" or [json.loads(x) for _, x in got]


def test_what_the_reference_refuses_is_refused_alike():
    hall = HALLS[0]
    for cases in ("not a list", [["projectNo"]], [{"serviceNumber": "x"}], [{1: "a", "projectNo": "p"}],
                  {"projectNo": "p"}, [{"projectNo": object()}], None, [{"projectNo": "p", "x": {1, 2}}]):
        same("E:1:1", "E", "rating", 5, "", 1795000000.0, cases, "S", "W", hall)
    same("E:1:1", "E", "rating", 9, "", 1795000000.0, [{"projectNo": "p"}], "S", "W", hall)  # no satisfaction


def test_local_time_cache_gives_what_strftime_gives():
    import time
    for t in (0.0, 1795000000.0, 1795000000.5, 1795000000.999, 1795000001.0, 86399.9):
        for tz in (0, 480, -90):
            for _ in range(2):  # computed, then from the cache
                assert records.local_time(t, tz) == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t + tz * 60))
