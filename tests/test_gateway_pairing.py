"""Pairing and bindings (一码一账号) enforced by the database and audited;
the API's token; device listing."""

import sqlite3
import threading
import time

import pytest
from support.gwfixtures import connect, pair, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import wait_for

from gateway.devices.keys import Key
from gateway.store import db


def test_one_code_one_account_refusal_shows_the_binding_and_replace_is_audited(hall):
    a = connect(hall.device("EV-A"))
    b = connect(hall.device("EV-B"))
    pair(hall, a, "S1", "W1")
    old_key = a.key.raw
    # The same staff account on another device: refused, the current binding shown.
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-B", "staff_id": "S1", "window": "W2"})
    assert code == 409 and body["current"][0]["device_id"] == "EV-A" and "S1" in body["error"]
    # The same window: refused too.
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-B", "staff_id": "S2", "window": "W1"})
    assert code == 409
    # Replace: A is unbound (told so, with a tagged unbind), B takes S1.
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-B", "staff_id": "S1", "window": "W2",
                                                "replace": True, "actor": "tech-7"})
    assert code == 201 and body["replaced"][0]["device_id"] == "EV-A"
    a.wait(lambda: a.unbound == 1 and a.staff_id == "")
    b.wait(lambda: b.staff_id == "S1")
    assert a.key.raw == old_key  # keys are not pairing's: only the USB cable changes one
    code, got = hall.api("GET", "/api/bindings")
    assert [(x["device_id"], x["staff_id"], x["window"]) for x in got["bindings"]] == [("EV-B", "S1", "W2")]
    code, audit = hall.api("GET", "/api/audit")
    actions = [(x["action"], x["device_id"]) for x in reversed(audit["audit"])]
    assert actions == [("provision", "EV-A"), ("provision", "EV-B"), ("bind", "EV-A"), ("refuse", "EV-B"),
                       ("refuse", "EV-B"), ("unbind", "EV-A"), ("replace", "EV-B")]
    assert all("key" not in x["detail"].replace("new key", "").replace("previous key", "")
               for x in audit["audit"]) and old_key.hex() not in str(audit)
    assert audit["audit"][0]["actor"] == "tech-7"
    # Unpair: audited, the device told.
    code, body = hall.api("POST", "/api/unpair", {"device_id": "EV-B"})
    assert code == 200
    b.health()
    b.wait(lambda: b.unbound == 1)
    code, body = hall.api("POST", "/api/unpair", {"device_id": "EV-B"})
    assert code == 404


def test_re_pairing_leaves_the_key_and_re_provisioning_takes_over_when_the_device_uses_it(hall):
    dev = connect(hall.device("EV-K"))
    pair(hall, dev, "S1", "W1")
    k1 = dev.key.raw
    code, body = hall.api("POST", "/api/pair", {"device_id": "EV-K", "staff_id": "S2", "window": "W2",
                                                "replace": True})
    assert code == 201
    dev.wait(lambda: dev.staff_id == "S2")  # the bind was tagged with k1: no key in it
    assert dev.key.raw == k1 and not any("key" in m for m in dev.got("bind"))
    # The technician provisions again (a device suspected of a leaked key):
    # until the device is seen using the new key, the old one still works.
    code, body = hall.api("POST", "/api/devices/EV-K/key")
    assert code == 201 and body["reprovisioned"] and bytes.fromhex(body["key"]) != k1
    eid = dev.press(3)
    dev.wait(lambda: eid in dev.acked)
    assert not hall.gw.registry.get("EV-K").key_confirmed
    dev.set_key(bytes.fromhex(body["key"]))  # written over USB; the device restarts
    dev.reboot()
    connect(dev)
    wait_for(lambda: hall.gw.registry.get("EV-K").key_confirmed, what="new key confirmed")
    assert dev.refused == {}
    # From now on the old key is worthless.
    before = hall.gw.registry.rejected.get("badtag", 0)
    dev.health(key=Key(k1))
    wait_for(lambda: hall.gw.registry.rejected.get("badtag", 0) == before + 1, what="old key refused")
    eid = dev.press(4)
    dev.wait(lambda: eid in dev.acked)


def test_the_database_refuses_a_second_binding_even_concurrently(hall, tmp_path):
    for name in ["EV-%d" % i for i in range(8)] + ["EV-C%d" % i for i in range(6)]:
        assert hall.api("POST", "/api/devices/%s/key" % name)[0] == 201
    for i in range(8):
        code, _ = hall.api("POST", "/api/pair", {"device_id": "EV-%d" % i, "staff_id": "S-%d" % i,
                                                 "window": "W-%d" % i})
        assert code == 201
    results = []

    def go(i):
        results.append(hall.api("POST", "/api/pair", {"device_id": "EV-C%d" % i, "staff_id": "S-NEW",
                                                      "window": "W-C%d" % i})[0])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [201] + [409] * 5
    # Below the API: the schema itself refuses.
    conn = db.connect(hall.db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO bindings (device_id, staff_id, window, bound_at) VALUES ('EV-X', 'S-1', 'W-X', 0)")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO bindings (device_id, staff_id, window, bound_at) VALUES ('EV-Y', 'S-Y', 'W-1', 0)")
    conn.close()


def test_api_requires_the_token_and_checks_requests(hall):
    for token in (None, "wrong-token-wrong-token"):
        code, body = hall.api("GET", "/api/status", token=token)
        assert code == 401
        code, body = hall.api("POST", "/api/pair", {"device_id": "EV-1", "staff_id": "S", "window": "W"},
                              token=token)
        assert code == 401
    assert rows(hall.db, "SELECT count(*) FROM bindings")[0][0] == 0
    code, body = hall.api("POST", "/api/pair", {"device_id": "bad id!", "staff_id": "S", "window": "W"})
    assert code == 400 and "device_id" in body["error"]
    code, body = hall.api("POST", "/api/invitations", {"window": "W", "cases": []})
    assert code == 400 and "cases" in body["error"]
    code, body = hall.api("GET", "/api/nothing")
    assert code == 404


def test_device_list_detail_health_and_bitmaps(hall):
    dev = connect(hall.device("EV-H"))
    pair(hall, dev, "S1", "W1")
    dev.health(stuck=0b00011)
    wait_for(lambda: hall.gw.registry.get("EV-H").health.get("stuck") == 3, what="health")
    code, d = hall.api("GET", "/api/devices/EV-H")
    assert d["online"] and d["paired"] and d["staff_id"] == "S1" and d["window"] == "W1"
    assert d["stuck_buttons"] == [5, 4] and d["fw"] == "fake-0.1" and d["journal_depth"] == 0
    assert abs(d["clock_offset_s"]) < 5
    code, lst = hall.api("GET", "/api/devices")
    assert [x["device_id"] for x in lst["devices"]] == ["EV-H"]
    import base64

    from gateway.devices.commands import BITMAP_CHUNK

    img = bytes(range(256)) * 5  # 1280 bytes, in frames of BITMAP_CHUNK
    code, body = hall.api("POST", "/api/devices/EV-H/bitmaps",
                          {"slot": 1, "width": 160, "height": 64, "data": base64.b64encode(img).decode()})
    assert code == 200 and body["frames"] == -(-len(img) // BITMAP_CHUNK)
    dev.wait(lambda: bytes(dev.bitmaps.get(1, b"")) == img)
    code, got = hall.api("GET", "/api/devices/EV-H/bitmaps/1")
    assert code == 200 and (got["width"], got["height"]) == (160, 64) and base64.b64decode(got["data"]) == img
    code, got = hall.api("GET", "/api/devices/EV-H/bitmaps")
    assert got["bitmaps"] == [{"slot": 1, "width": 160, "height": 64}]
    assert hall.api("GET", "/api/devices/EV-H/bitmaps/0")[0] == 404
    code, body = hall.api("POST", "/api/devices/EV-H/bitmaps",
                          {"slot": 1, "width": 160, "height": 64, "data": base64.b64encode(img[:9]).decode()})
    assert code == 400 and "1280" in body["error"]
    # Stored: a device that comes back with another staff id gets the card again.
    n = len(dev.got("bitmap"))
    dev.staff_id = "S-OTHER"
    dev.hello()
    dev.wait(lambda: dev.staff_id == "S1" and len(dev.got("bitmap")) > n)
    # Every command confirmed (the device's `done` frames are all in), then
    # its heartbeats stop: offline after 3 missed (forced clock).
    pending = hall.gw.commands.downlink.pending
    dev.wait(lambda: not [p for p in pending.values() if p.device_id == "EV-H"], timeout=10)
    time.sleep(0.2)
    hall.gw.monitor.tick(now=hall.gw.registry.get("EV-H").last_seen + 91)
    code, d = hall.api("GET", "/api/devices/EV-H")
    assert d["online"] is False


def test_commands_are_resent_until_the_device_confirms_them(hall):
    """A bitmap part lost on the way (noise, a device with no heap to spare)
    is sent again until the device answers `done`; confirmed ones are not."""
    import base64

    from gateway.devices.commands import BITMAP_CHUNK

    dev = connect(hall.device("EV-R"))
    pair(hall, dev, "S9", "W9")
    dev.confirm = False  # the device hears the frames but its answers are lost
    img = bytes(range(256)) * 4
    code, body = hall.api("POST", "/api/devices/EV-R/bitmaps",
                          {"slot": 2, "width": 128, "height": 64, "data": base64.b64encode(img).decode()})
    assert code == 200
    parts = -(-len(img) // BITMAP_CHUNK)
    dev.wait(lambda: len([m for m in dev.got("bitmap") if m["slot"] == 2]) >= 2 * parts, timeout=10)
    dev.confirm = True  # answers get through again: the resending stops
    dl = hall.gw.commands.downlink

    def settled():
        # Nothing pending, twice 0.2 s apart: a resend round takes its
        # commands out of `pending` while it sends them, then puts them back.
        if [p for p in dl.pending.values() if p.device_id == "EV-R"]:
            return False
        dev.poll(0.2)
        return not [p for p in dl.pending.values() if p.device_id == "EV-R"]

    dev.wait(settled, timeout=15)
    dev.poll(0.2)  # what was on its way before it settled
    n = len(dev.got("bitmap"))
    time.sleep(2.5)
    dev.poll(0.1)
    assert len(dev.got("bitmap")) == n
    assert bytes(dev.bitmaps[2]) == img and dl.stats["resent"] >= parts


def test_a_newer_invite_or_a_cancel_ends_resends_of_older_invites(hall):
    """A stale invite resent after the clerk moved on would reopen it on the
    device and close the current one: newer invites and cancels stop it."""
    dev = connect(hall.device("EV-S"))
    pair(hall, dev, "S7", "W7")
    dev.confirm = False  # the device's answers are lost: the gateway keeps resending
    code, first = hall.api("POST", "/api/invitations", {"window": "W7", "cases": [{"projectNo": "P-1"}]})
    assert code == 201
    dl = hall.gw.commands.downlink

    def pending_invites():
        return sorted({p.msg["invitation"] for p in list(dl.pending.values())
                       if p.device_id == "EV-S" and p.msg["type"] == "invite"})

    assert pending_invites() == [first["invitation"]]
    code, second = hall.api("POST", "/api/invitations", {"window": "W7", "cases": [{"projectNo": "P-2"}]})
    assert code == 201
    assert pending_invites() == [second["invitation"]]
    code, _ = hall.api("POST", "/api/invitations/%s/cancel" % second["invitation"])
    assert code == 200 and pending_invites() == []
    time.sleep(2.5)  # past the first resend: the withdrawn invites never go out again
    dev.poll(0.2)
    invites = [m["invitation"] for m in dev.got("invite")]
    assert invites.count(first["invitation"]) == 1 and invites.count(second["invitation"]) == 1
