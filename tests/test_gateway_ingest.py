"""The gateway in-process against fake devices on real ptys: pairing, the
invitation → rating → ACK → records path, duplicates, uninvited presses,
unrated sessions, time correction, security checks, and a full disk."""

import base64
import time

from support.gwfixtures import connect, invite, pair, records, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import wait_for

from protocol import hmac256


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

    dev.send(ev(100), key=hmac256.Key(b"\x01" * 32))  # forged: wrong key
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


def test_unpaired_devices_only_get_to_pair(hall):
    dev = connect(hall.device("EV-5"))
    dev.health()
    code, d = hall.api("GET", "/api/devices/EV-5")
    assert code == 200 and d["paired"] is False
    dev.event("uninvited", 5)
    dev.event("rating", 5, (), "INV-X")
    wait_for(lambda: hall.gw.registry.rejected.get("unpaired", 0) >= 2, what="unpaired rejected")
    time.sleep(0.1)
    dev.poll(0.05)
    assert dev.acked == [] and rows(hall.db, "SELECT count(*) FROM events")[0][0] == 0
    # An invitation for its window is impossible: nothing is bound there.
    code, body = hall.api("POST", "/api/invitations", {"window": "A09", "cases": ["P"]})
    assert code == 404
    # Pairing works, and then its journal is accepted.
    pair(hall, dev, "S5", "A09")
    dev.resend()
    dev.wait(lambda: not dev.journal)


def test_interrupted_pairing_is_completed_at_the_next_hello(hall):
    dev = hall.device("EV-6")
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-6", "staff_id": "S6", "window": "A06"})
    assert code == 201 and body["sent"] is False  # never heard of: sent at its hello
    connect(dev)
    dev.wait(lambda: dev.key is not None and dev.staff_id == "S6")
    dev.health()
    wait_for(lambda: hall.gw.registry.get("EV-6").key_confirmed, what="key confirmed")
    # Once the key is confirmed, an untagged hello claiming to be unpaired gets nothing.
    n = len(dev.got("bind"))
    key, dev.key = dev.key, None
    dev.hello(paired=0)
    wait_for(lambda: hall.gw.registry.rejected.get("untagged", 0) >= 1, what="untagged refused")
    dev.key = key
    time.sleep(0.1)
    dev.poll(0.05)
    assert len(dev.got("bind")) == n


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

    from gateway.registry import Registry
    from gateway.router import Link, Router

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
    dev = reg.get("EV-S", create=True)
    dev.link, dev.online = SlowLink(), True
    router = Router(reg, committer=None, cfg=None, session=1)

    def sender():
        for _ in range(25):
            router.send(dev, {"type": "cancel", "invitation": "I"})

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert dev.link.seqs == sorted(dev.link.seqs) and len(dev.link.seqs) == 100


def test_a_flood_of_made_up_devices_is_capped(hall, monkeypatch):
    from gateway import registry

    monkeypatch.setattr(registry, "MAX_DEVICES", 3)
    dev = connect(hall.device("EV-F0"))
    for i in range(1, 6):
        FakeDevice = type(dev)
        FakeDevice("EV-F%d" % i, dev.t).hello()
    wait_for(lambda: hall.gw.registry.rejected.get("too_many", 0) >= 3, what="too_many counted")
    assert len(hall.gw.registry.devices) == 3
    # Pairing is never refused by the cap.
    code, _ = hall.api("POST", "/api/pair", {"device_id": "EV-NEW", "staff_id": "S", "window": "W"})
    assert code == 201 and hall.gw.registry.get("EV-NEW") is not None


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
