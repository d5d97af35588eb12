"""Security review, finding 11a: a device clock that cannot be right does not
date a press.

A device whose clock read 0xFFFFFFFF had its press stored in 2106, missing
from this month's report. The gateway now takes the device's time only when
it is plausible against the moment the event arrived (not before 2020, not
more than 5 minutes ahead), else the uptime correction or the receive time
(gateway/records.py press_time), with the source in events.time_source.
Through a real gateway with real frames, and press_time() itself."""

import time

from support.gwfixtures import connect, invite, monthly_rows, pair, records, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)

from gateway import records as rec
from gateway import report

NOW = 1795000000.0  # 2026-11-18
REF = (7, 60_000, NOW - 5.0)  # hello of boot 7 at uptime 60 s, 5 s before NOW


def test_a_clock_far_ahead_is_not_believed():
    # 0xFFFFFFFF is 2106-02-07: the uptime correction, else the receive time.
    assert rec.press_time(0xFFFFFFFF, 64_000, 7, NOW, REF) == (NOW - 1.0, "uptime")
    assert rec.press_time(0xFFFFFFFF, 64_000, 7, NOW, None) == (NOW, "received")
    assert rec.press_time(0xFFFFFFFF, 64_000, 6, NOW, REF) == (NOW, "received")  # another boot's uptime
    # Just past the tolerance is refused; at it and below, believed.
    assert rec.press_time(int(NOW) + 301, 64_000, 7, NOW, REF)[1] == "uptime"
    assert rec.press_time(int(NOW) + 300, 64_000, 7, NOW, REF) == (NOW + 300, "device")
    assert rec.press_time(int(NOW) + 2, 64_000, 7, NOW, REF) == (NOW + 2, "device")


def test_a_clock_before_2020_is_not_believed_and_a_late_event_keeps_its_time():
    assert rec.press_time(1, 64_000, 7, NOW, REF) == (NOW - 1.0, "uptime")
    assert rec.press_time(rec.TIME_FLOOR - 1, 64_000, 7, NOW, None) == (NOW, "received")
    assert rec.press_time(rec.TIME_FLOOR, 64_000, 7, NOW, None) == (float(rec.TIME_FLOOR), "device")
    # Journaled three days ago, delivered now: that is when it was pressed.
    assert rec.press_time(int(NOW) - 3 * 86400, 64_000, 7, NOW, REF) == (NOW - 3 * 86400, "device")


def test_the_uptime_correction_is_held_to_the_same_bound():
    # An uptime far beyond the reference would put the press in the future too.
    assert rec.press_time(0, 0xFFFFFFFF, 7, NOW, REF) == (NOW, "received")
    assert rec.press_time(0, 60_000 + 305_000, 7, NOW, REF) == (NOW + 300, "uptime")


def test_a_gateway_without_a_set_clock_cannot_call_a_device_clock_early():
    assert rec.press_time(1795000000, 5000, 7, 1.0, None) == (1795000000.0, "device")
    assert rec.press_time(1000, 5000, 7, 1.0, None) == (1.0, "received")


def _event(dev, score, device_time, reasons=()):
    """Rate the open invitation with the device clock reading `device_time`."""
    inv = dev.invitation
    dev.invitation = None
    dev.closed.append(inv["invitation"])
    dev.event_seq += 1
    ev = {"type": "event", "device_id": dev.device_id, "boot": dev.boot, "event_seq": dev.event_seq,
          "kind": "rating", "score": score, "reasons": list(reasons), "invitation": inv["invitation"],
          "time": device_time, "uptime_ms": dev.uptime_ms()}
    dev.journal[(dev.boot, dev.event_seq)] = ev
    dev.send(ev)
    eid = (dev.boot, dev.event_seq)
    dev.wait(lambda: eid in dev.acked)
    return "%s:%d:%d" % (dev.device_id, dev.boot, dev.event_seq)


def test_through_the_gateway_a_press_at_0xffffffff_is_dated_now_and_in_this_months_report(hall):
    dev = connect(hall.device("EV-T"))
    pair(hall, dev, "S77", "A07")
    sent = {}
    for name, device_time in (("ffff", 0xFFFFFFFF), ("1970", 1000), ("late", int(time.time()) - 2 * 86400)):
        invite(hall, dev, "A07", ["P-" + name])
        before = time.time()
        sent[name] = (_event(dev, 4, device_time), before, time.time())
    got = {eid: (press, src, dtime) for eid, press, src, dtime in
           rows(hall.db, "SELECT event_id, press_time, time_source, device_time FROM events")}
    for name in ("ffff", "1970"):
        eid, before, after = sent[name]
        press, src, dtime = got[eid]
        assert src == "uptime" and dtime in (0xFFFFFFFF, 1000), got[eid]  # the device's reading kept as sent
        assert before - 1.0 <= press <= after + 1.0, (name, press, before)
    eid, before, _ = sent["late"]
    assert got[eid] == (float(int(before) - 2 * 86400), "device", int(before) - 2 * 86400)

    # The records say today, hall local time (UTC+8), not 2106 or 1970.
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))
    by_case = {r["projectNo"]: r["assessTime"] for r in records(hall.db)}
    assert by_case["P-ffff"].startswith(today) and by_case["P-1970"].startswith(today), by_case

    # And this month's report counts them (the late one too, unless it fell in last month).
    staff_row = monthly_rows(hall.db, "S77")
    _, month = report.local_day(time.time())
    late_month = time.strftime("%Y-%m", time.gmtime(int(sent["late"][1]) - 2 * 86400 + 8 * 3600))
    assert staff_row["满意"] == staff_row["rated"] == (3 if late_month == month else 2), staff_row
