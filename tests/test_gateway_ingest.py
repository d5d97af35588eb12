"""The gateway in-process against fake devices on real ptys: pairing, the
invitation → rating → ACK → records path, duplicates, uninvited presses,
unrated sessions, time correction, security checks, and a full disk."""

import base64
import time

from support.gwfixtures import connect, invite, pair, provision_key, records, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import wait_for

from gateway.devices.keys import Key


def test_batch_rating_is_one_record_per_case_and_duplicates_are_absorbed(hall):
    dev = connect(hall.device("EV-1"))
    card = {"slot": 0, "width": 128, "height": 64, "data": base64.b64encode(bytes(range(256)) * 4).decode()}
    pair(hall, dev, "S1024", "A05", staff_name="张三", bitmaps=[card])
    dev.wait(lambda: bytes(dev.bitmaps.get(0, b"")) == bytes(range(256)) * 4)
    inv = invite(hall, dev, "A05", [{"projectNo": "P-1", "serviceNumber": "SN-1", "taskCode": "T-1"},
                                    {"projectNo": "P-2"}, "P-3"])
    assert dev.invitation["cases"] == ["P-1", "P-2", "P-3"]
    eid = dev.rate(2, ["R1", "R3"])
    dev.wait(lambda: eid in dev.acked and not dev.journal)

    recs = records(hall.db)
    assert [r["projectNo"] for r in recs] == ["P-1", "P-2", "P-3"]
    assert [r["idempotencyKey"] for r in recs] == ["EV-1:3:1/1", "EV-1:3:1/2", "EV-1:3:1/3"]
    for r in recs:
        assert r["satisfaction"] == 2 and r["evalDetail"] == "R1,R3" and r["rated"] is True
        assert r["proManager"] == "S1024" and r["windowId"] == "A05" and r["deviceId"] == "EV-1"
        assert r["areaCode"] == "330100" and r["deptCode"] == "D01" and r["pf"] == "5"
        assert r["assessNumber"] == 1 and r["eventId"] == "EV-1:3:1"
        assert time.strptime(r["assessTime"], "%Y-%m-%d %H:%M:%S")
    assert recs[0]["serviceNumber"] == "SN-1" and recs[0]["taskCode"] == "T-1"
    # Hall local time (UTC+8) of the press.
    (press,), = rows(hall.db, "SELECT press_time FROM events")
    assert abs(press - time.time()) < 5
    assert recs[0]["assessTime"] == time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(press + 8 * 3600))

    # A retransmission (the ACK was lost): ACKed again, stored once.
    ev = {"type": "event", "device_id": "EV-1", "boot": 3, "event_seq": 1, "kind": "rating", "score": 2,
          "reasons": ["R1", "R3"], "invitation": inv["invitation"], "time": int(time.time()), "uptime_ms": 5}
    n = dev.acked.count(eid)
    dev.send(ev)
    dev.wait(lambda: dev.acked.count(eid) == n + 1)
    assert rows(hall.db, "SELECT count(*) FROM events")[0][0] == 1
    assert len(records(hall.db)) == 3
    code, got = hall.api("GET", "/api/invitations/" + inv["invitation"])
    assert code == 200 and got["state"] == "rated" and got["event_id"] == "EV-1:3:1"


def test_unrated_and_uninvited(hall):
    dev = connect(hall.device("EV-2"))
    pair(hall, dev, "S2", "A02")
    eid = dev.press(5)  # nobody invited: audit only
    dev.wait(lambda: eid in dev.acked)
    invite(hall, dev, "A02", ["P-9"])
    eid2 = dev.timeout()
    dev.wait(lambda: eid2 in dev.acked)
    kinds = rows(hall.db, "SELECT kind, score FROM events ORDER BY id")
    assert kinds == [("uninvited", 5), ("unrated", 0)]
    recs = records(hall.db)
    assert len(recs) == 1
    assert recs[0]["rated"] is False and "satisfaction" not in recs[0] and recs[0]["projectNo"] == "P-9"
    assert recs[0]["evalDetail"] == ""


def test_press_time_corrected_from_uptime_when_the_clock_was_never_set(hall):
    dev = connect(hall.device("EV-3", clock=False))
    pair(hall, dev, "S3", "A03")
    invite(hall, dev, "A03", ["P-1"])
    time.sleep(0.3)
    before = time.time()
    eid = dev.rate(4)
    dev.wait(lambda: eid in dev.acked)
    (press, src, dtime), = rows(hall.db, "SELECT press_time, time_source, device_time FROM events")
    assert dtime == 0 and src == "uptime"
    assert abs(press - before) < 0.2


def test_forged_replayed_and_untagged_frames_are_rejected_and_counted(hall):
    dev = connect(hall.device("EV-4"))
    pair(hall, dev, "S4", "A04")
    eid = dev.press(3)
    dev.wait(lambda: eid in dev.acked)
    stored = rows(hall.db, "SELECT count(*) FROM events")[0][0]
    base = dict(hall.gw.registry.rejected)

    def ev(seq):
        return {"type": "event", "device_id": "EV-4", "boot": 3, "event_seq": seq, "kind": "uninvited",
                "score": 1, "reasons": [], "invitation": "", "time": int(time.time()), "uptime_ms": 9}

    dev.send(ev(100), key=Key(b"\x01" * 32))  # forged: wrong key
    dev.send(ev(101), key=None)  # untagged from a keyed device
    wire = dev.send(ev(102))  # good...
    dev.wait(lambda: (3, 102) in dev.acked)
    dev.t.write(wire)  # ...and the same bytes played back
    dev.send(ev(103), seq=1)  # an old seq with a good tag

    def counted():
        r = hall.gw.registry.rejected
        return all(r.get(k, 0) - base.get(k, 0) >= n for k, n in
                   (("badtag", 1), ("untagged", 1), ("replay", 2)))

    wait_for(counted, what="rejections counted")
    assert rows(hall.db, "SELECT count(*) FROM events")[0][0] == stored + 1
    time.sleep(0.1)
    dev.poll(0.05)
    assert not {(3, 100), (3, 101), (3, 103)} & set(dev.acked)
    code, st = hall.api("GET", "/api/status")
    assert st["rejected"]["badtag"] >= 1 and st["rejected"]["replay"] >= 2
    code, d = hall.api("GET", "/api/devices/EV-4")
    assert d["rejected"]["badtag"] >= 1


def test_unprovisioned_devices_get_no_answer_and_are_listed_for_the_technician(hall):
    dev = hall.device("EV-5", provision=False)
    for _ in range(3):
        dev.hello()
        dev.poll(0.3)
    dev.health()
    dev.event("uninvited", 5)
    dev.event("rating", 5, (), "INV-X")
    wait_for(lambda: hall.gw.registry.rejected.get("unknown", 0) >= 5, what="unknown rejected")
    dev.poll(0.2)
    assert dev.received == []  # not a frame to a device without a key
    assert rows(hall.db, "SELECT count(*) FROM events")[0][0] == 0
    assert rows(hall.db, "SELECT count(*) FROM devices")[0][0] == 0
    assert hall.api("GET", "/api/devices/EV-5")[0] == 404
    code, lst = hall.api("GET", "/api/devices")
    assert lst["devices"] == [] and [(d["device_id"], d["link"]) for d in lst["unprovisioned"]] == [
        ("EV-5", "serial:" + dev.t.name)]
    # Pairing it is refused until it is provisioned (over USB).
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-5", "staff_id": "S5", "window": "A09"})
    assert code == 409 and "provision" in body["error"]
    provision_key(hall, dev)
    connect(dev)
    pair(hall, dev, "S5", "A09")
    dev.resend()  # the journal, tagged now
    dev.wait(lambda: not dev.journal)
    assert hall.api("GET", "/api/devices")[1]["unprovisioned"] == []


def test_pairing_while_offline_is_completed_at_the_next_hello(hall):
    dev = hall.device("EV-6")
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-6", "staff_id": "S6", "window": "A06"})
    assert code == 201 and body["sent"] is False  # never heard: sent at its hello
    connect(dev)
    dev.wait(lambda: dev.staff_id == "S6")
    wait_for(lambda: hall.gw.registry.get("EV-6").key_confirmed, what="key confirmed")
    # An untagged hello claiming to be unpaired gets nothing.
    n = len(dev.received)
    key, dev.key = dev.key, None
    dev.hello(paired=0)
    wait_for(lambda: hall.gw.registry.rejected.get("untagged", 0) >= 1, what="untagged refused")
    dev.key = key
    time.sleep(0.1)
    dev.poll(0.05)
    assert len(dev.received) == n


def _press_until_full(hall, dev, score):
    """Uninvited presses until the pages run out and the storage alarm rises."""
    deadline = time.monotonic() + 15
    while hall.gw.committer.alarm is None:
        assert time.monotonic() < deadline, hall.gw.committer.stats
        for _ in range(20):
            dev.press(score)
        dev.poll(0.05)


def _resend_until_stored(hall, dev):
    """Space is back: the device's resends go through, the alarm clears,
    and every event it ever made is stored once."""
    deadline = time.monotonic() + 10
    while dev.journal and time.monotonic() < deadline:
        dev.resend()
        dev.poll(0.2)
    assert not dev.journal
    wait_for(lambda: hall.gw.committer.alarm is None, what="alarm cleared")
    assert rows(hall.db, "SELECT count(*) FROM events")[0][0] == dev.event_seq


def test_a_full_disk_stops_acks_and_recovers(hall):
    dev = connect(hall.device("EV-7"))
    pair(hall, dev, "S7", "A07")
    first = dev.press(1)
    dev.wait(lambda: first in dev.acked)
    pages = rows(hall.db, "PRAGMA page_count")[0][0]
    hall.gw.committer.control(lambda conn: conn.execute("PRAGMA max_page_count = %d" % pages))
    _press_until_full(hall, dev, 2)
    code, st = hall.api("GET", "/api/status")
    assert st["alarm"] and "full" in st["alarm"]["error"]
    time.sleep(0.3)
    dev.poll(0.05)
    stored = {(b, s) for b, s in rows(hall.db, "SELECT boot, event_seq FROM events")}
    assert set(dev.acked) <= stored  # nothing ACKed that is not durable
    assert dev.journal  # the device keeps what was not ACKed
    # Space returns: the next resend goes through and the alarm clears.
    hall.gw.committer.control(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    _resend_until_stored(hall, dev)


def test_storage_cap_through_the_api_is_a_full_disk_that_lifts(hall):
    """POST /api/storage caps the database now: at the current size it is a
    full disk (no ACKs, the alarm), and 0 lifts it; nothing is lost."""
    dev = connect(hall.device("EV-9"))
    pair(hall, dev, "S9", "A09")
    code, body = hall.api("POST", "/api/storage", {"max_size_mb": 0.001})
    assert code == 200 and body == {"max_size_mb": 0.001}
    _press_until_full(hall, dev, 3)
    assert dev.journal and hall.api("GET", "/api/status")[1]["alarm"]
    assert hall.api("POST", "/api/storage", {"max_size_mb": -1})[0] == 400
    assert hall.api("POST", "/api/storage", {"max_size_mb": 0})[0] == 200
    _resend_until_stored(hall, dev)


def test_a_device_clock_that_drifted_is_set_again(hall):
    dev = connect(hall.device("EV-8"))
    pair(hall, dev, "S8", "A08")
    n = len(dev.got("time"))
    dev.health()  # clock right: nothing
    dev.poll(0.2)
    assert len(dev.got("time")) == n
    dev.clock = False  # time = 0 in health: never set
    dev.health()
    dev.wait(lambda: len(dev.got("time")) == n + 1)
    assert abs(dev.got("time")[-1]["time"] - time.time()) < 5 and dev.got("time")[-1]["tz_min"] == 480


def test_concurrent_senders_keep_the_seq_order_on_the_wire():
    # The commit thread (ACKs), hello answers and the API all send to one
    # device: seqs must reach the wire in order, or the device refuses the
    # late one as a replay. A link that takes its time to write shows it.
    import random
    import threading

    from gateway.devices.commands import Commands
    from gateway.devices.registry import Registry
    from gateway.ingest.router import Link

    class SlowLink(Link):
        name = "slow"

        def __init__(self):
            super().__init__()
            self.seqs = []

        def send(self, data):
            time.sleep(random.random() * 0.002)
            from protocol import frame as fr
            self.seqs.append(fr.decode(bytes(data[:-1])).seq)

    reg = Registry()
    dev = reg.add("EV-S")
    dev.link, dev.online = SlowLink(), True
    commands = Commands(reg, cfg=None, session=1)

    def sender():
        for _ in range(25):
            commands.send(dev, {"type": "cancel", "invitation": "I"})

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert dev.link.seqs == sorted(dev.link.seqs) and len(dev.link.seqs) == 100


def test_made_up_devices_register_nothing_and_the_heard_table_is_bounded(hall, monkeypatch):
    from gateway.devices import registry

    monkeypatch.setattr(registry, "HEARD_MAX", 3)
    dev = connect(hall.device("EV-F0"))
    for i in range(1, 7):
        FakeDevice = type(dev)
        FakeDevice("EV-F%d" % i, dev.t).hello()
    wait_for(lambda: hall.gw.registry.rejected.get("unknown", 0) >= 6, what="unknown counted")
    assert list(hall.gw.registry.devices) == ["EV-F0"]
    assert [d["device_id"] for d in hall.gw.registry.unprovisioned()] == ["EV-F4", "EV-F5", "EV-F6"]
    assert rows(hall.db, "SELECT device_id FROM devices") == [("EV-F0",)]


def test_a_read_only_database_stops_acks_and_recovers(hall):
    dev = connect(hall.device("EV-R"))
    pair(hall, dev, "S-R", "A-R")
    hall.gw.committer.control(lambda conn: conn.execute("PRAGMA query_only = ON"))  # SQLITE_READONLY
    eid = dev.press(4)
    wait_for(lambda: hall.gw.committer.alarm is not None, what="storage alarm")
    assert "readonly" in hall.gw.committer.alarm["error"]
    dev.poll(0.3)
    assert eid not in dev.acked and dev.journal
    hall.gw.committer.control(lambda conn: conn.execute("PRAGMA query_only = OFF"))
    deadline = time.monotonic() + 10
    while dev.journal and time.monotonic() < deadline:
        dev.resend()
        dev.poll(0.2)
    assert eid in dev.acked
    wait_for(lambda: hall.gw.committer.alarm is None, what="alarm cleared")
