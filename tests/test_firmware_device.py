"""The firmware end to end: the real MicroPython VM (-X heapsize=64K) running
firmware/ as installed on a device's flash (.mpy, as a flashing tool puts it
there), its UART on a pty, against the test-side gateway peer of
tests/support/fakegw.py. Buttons go in on the VM's stdin; the screen comes
back through DIR/screen.txt and the pixels of DIR/screen.pbm."""

import json
import os
import time

import pytest
from support.fakegw import FakeGateway
from support.simdevice import SimDevice, install

from gateway.devices.keys import Key
from protocol import messages
from tools.provision import write_key_dir

KEY = bytes(range(32))
CONFIG = {"invite_timeout_s": 10, "heartbeat_s": 1, "stuck_ms": 400,
          "reasons_version": "t1", "reasons": []}


@pytest.fixture(scope="session")
def fw_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fw-mpy")


class Rig:
    def __init__(self, tmp_path, cache, board=None, paired=True, keyed=True, auto_ack=True, heap=None):
        self.gw = FakeGateway(config=CONFIG, auto_ack=auto_ack)
        flash = tmp_path / "flash"
        main = install(flash, cache)
        if keyed:  # what `hcp tool provision` writes over USB
            write_key_dir(flash, KEY)
            self.gw.set_key(KEY)
        if paired:
            (flash / "pair.json").write_text(json.dumps({"staff_id": "S001", "window": "W07"}))
        self.dev = SimDevice(flash, self.gw.path, device_id="EV-T1", board=board, main=main,
                             heap=heap)
        self.dev.start()
        self.hello = self.gw.wait_for("hello")

    def invite(self, inv, cases=("C1",), timeout_s=10):
        # Confirmed like the gateway does it: resent until the device's `done`.
        self.gw.command({"type": "invite", "invitation": inv, "cases": list(cases),
                         "timeout_s": timeout_s})
        # The sim board names the invitation on screen too (line 2): wait for
        # this one's prompt (an earlier invitation's may still be showing).
        want = "invited\n%s\n" % inv
        deadline = time.monotonic() + 5.0
        while (self.dev.flash / "screen.txt").read_text() != want:
            assert time.monotonic() < deadline, (self.dev.flash / "screen.txt").read_text()
            time.sleep(0.005)

    def event(self, where, **kw):
        return self.gw.wait_for("event", where, **kw)

    def close(self):
        self.dev.kill()
        self.gw.close()


@pytest.fixture
def rig(tmp_path, fw_cache):
    r = Rig(tmp_path, fw_cache)
    r.dev.wait_screen("idle")
    yield r
    r.close()


def _inv(name):
    return lambda m: m["invitation"] == name


def test_good_rating_thanks_after_journal_then_idle(rig):
    assert rig.hello["paired"] == 1 and rig.hello["staff_id"] == "S001"
    rig.invite("INV-1")
    rows = rig.dev.pixels()
    assert any(rows[-4])  # the star labels over the buttons
    rig.dev.press(4)
    rig.dev.wait_screen("thanks")
    ev = rig.event(_inv("INV-1"))
    assert (ev["kind"], ev["score"], ev["reasons"]) == ("rating", 4, [])
    assert ev["boot"] == rig.hello["boot"] and ev["event_seq"] == 1
    assert ev["time"] >= 1795000000  # the clock the gateway set
    rig.dev.wait_screen("idle")
    # Acknowledged: the journal is empty again.
    rig.gw.wait_for("health", lambda m: m["journal_depth"] == 0, start=rig.gw.mark())


def test_bad_rating_with_reasons(rig):
    rig.invite("INV-2")
    rig.dev.press(2)
    rig.dev.wait_screen("reasons")
    before = rig.dev.pixels()
    rig.dev.press(5)  # key 1: the first reason, R1
    rig.dev.press(1)  # key 5: next page
    rig.dev.press(4)  # key 2 on page 2: R6
    rig.dev.press(1)  # key 5 on the last page with a tick: confirm
    rig.dev.wait_screen("thanks")
    ev = rig.event(_inv("INV-2"))
    assert (ev["kind"], ev["score"], ev["reasons"]) == ("rating", 2, ["R1", "R6"])
    # The check box of row 1 was empty before (a box outline, no fill).
    assert before[10 + 2 + 3][13] == 0


def test_bad_rating_without_reason_is_never_sent(rig):
    rig.invite("INV-3", timeout_s=1)
    rig.dev.press(1)
    rig.dev.wait_screen("reasons")
    rig.dev.press(1)  # next page
    rig.dev.press(1)  # last page, nothing ticked: back to page 1, no event
    ev = rig.event(_inv("INV-3"))
    assert (ev["kind"], ev["score"], ev["reasons"]) == ("unrated", 0, [])
    assert not rig.gw.received("event", lambda m: m["kind"] == "rating")


def test_batch_invitation_one_rating(rig):
    rig.invite("BATCH-1", cases=("C1", "C2", "C3"))
    rig.dev.press(5)
    rig.dev.wait_screen("thanks")
    rig.dev.press(5)  # a second tap during thanks: ignored
    rig.dev.wait_screen("idle")
    evs = rig.gw.received("event")
    assert [(e["kind"], e["score"], e["invitation"]) for e in evs] == [("rating", 5, "BATCH-1")]


def test_timeout_unrated_and_new_invite_closes_old(rig):
    rig.invite("INV-A")
    rig.invite("INV-B", timeout_s=1)  # closes INV-A as unrated first
    a = rig.event(_inv("INV-A"))
    assert (a["kind"], a["score"]) == ("unrated", 0)
    b = rig.event(_inv("INV-B"), timeout=4)
    assert (b["kind"], b["score"]) == ("unrated", 0) and b["event_seq"] == a["event_seq"] + 1
    rig.dev.wait_screen("idle")


def test_cancel_closes_without_event(rig):
    rig.invite("INV-C")
    rig.gw.send({"type": "cancel", "invitation": "INV-C"})
    rig.dev.wait_screen("idle")
    rig.dev.press(3)  # now uninvited
    ev = rig.event(None)
    assert ev["kind"] == "uninvited" and ev["event_seq"] == 1


def test_uninvited_presses_are_audit_not_ratings(rig):
    rig.dev.press(5)
    rig.dev.press(1)
    evs = [rig.event(lambda m, i=i: m["event_seq"] == i) for i in (1, 2)]
    assert [(e["kind"], e["score"], e["invitation"]) for e in evs] == \
        [("uninvited", 5, ""), ("uninvited", 1, "")]
    rig.gw.wait_for("health", lambda m: m["uninvited"] == 2)


def test_debounce_glitch_is_no_press(rig):
    rig.dev.send("down 3\nup 3")  # a 0 ms glitch: shorter than debounce
    rig.dev.press(4)  # then one clean press
    ev = rig.event(None)
    assert (ev["kind"], ev["score"], ev["event_seq"]) == ("uninvited", 4, 1)


def test_stuck_button_reported_not_pressed(rig):
    rig.dev.down(2)  # 2★ = button index 3 from the left
    h = rig.gw.wait_for("health", lambda m: m["stuck"] == 1 << 3)
    assert h["stuck"] == 8
    rig.dev.up(2)
    rig.gw.wait_for("health", lambda m: m["stuck"] == 0, start=rig.gw.mark())
    rig.dev.press(3)  # a working button still works
    ev = rig.event(None)
    assert (ev["score"], ev["event_seq"]) == (3, 1)  # the held one made no event


def test_retransmit_after_lost_ack(rig):
    rig.gw.drop_acks = 1
    rig.invite("INV-R")
    rig.dev.press(5)
    first = rig.event(_inv("INV-R"))
    # No ACK came: the same event (same id) again after the backoff.
    rig.gw.wait(lambda: rig.gw.duplicates >= 1, timeout=4)
    again = rig.gw.received("event", _inv("INV-R"))
    assert len(again) >= 2 and {(e["boot"], e["event_seq"]) for e in again} == \
        {(first["boot"], first["event_seq"])}
    rig.gw.wait_for("health", lambda m: m["journal_depth"] == 0, start=rig.gw.mark())
    assert rig.gw.conflicts == 0


def test_tagged_frames_and_untagged_refused(rig):
    # Every device frame so far was tagged (the peer holds the key and
    # refuses untagged ones).
    assert not rig.gw.refused
    mark = rig.gw.mark()
    rig.gw.send({"type": "invite", "invitation": "FORGED", "cases": ["C1"], "timeout_s": 9},
                key=None)
    err = rig.gw.wait_for("error", start=mark)
    assert err["code"] == 2
    # A replay of a good frame is refused too.
    old = messages.encode({"type": "invite", "session": rig.gw.session, "seq": 1,
                           "invitation": "REPLAY", "cases": ["C1"], "timeout_s": 9}, rig.gw.key)
    rig.gw.send(None, raw=old)
    rig.gw.wait_for("error", lambda m: m["code"] == 2 and m["ref_seq"] == 1, start=mark)
    assert rig.dev.screen() == "idle"


def test_a_device_without_a_key_obeys_nothing(tmp_path, fw_cache):
    """Unprovisioned: it says hello (so the technician sees it) and takes no
    command, tagged or not: whatever speaks on its line could be anyone."""
    r = Rig(tmp_path, fw_cache, paired=False, keyed=False)
    try:
        r.dev.wait_screen("unpaired")
        assert r.hello["paired"] == 0 and r.hello["staff_id"] == ""
        mark = r.gw.mark()
        r.gw.send({"type": "bind", "staff_id": "S666", "window": "W66"}, key=None)
        r.gw.send({"type": "time", "time": 1795000000, "tz_min": 480}, key=None)
        r.gw.send({"type": "bind", "staff_id": "S667", "window": "W66"}, key=Key(bytes(32)))
        time.sleep(1.0)
        got = {m["type"] for m in r.gw.frames[mark:]}
        assert got <= {"hello"}, got  # no done, no error, no health: nothing was obeyed
        assert not (r.dev.flash / "pair.json").exists() and r.dev.screen() == "unpaired"
        r.dev.press(3)  # counted only, never journaled
        time.sleep(0.5)
        assert not r.gw.received("event", start=mark)
    finally:
        r.close()


def test_unpaired_then_pairing_and_bitmaps(tmp_path, fw_cache):
    r = Rig(tmp_path, fw_cache, paired=False)
    try:
        r.dev.wait_screen("unpaired")
        assert r.hello["paired"] == 1 and r.hello["staff_id"] == ""
        mark = r.gw.mark()
        r.gw.send({"type": "invite", "invitation": "X", "cases": ["C1"], "timeout_s": 5})
        assert r.gw.wait_for("error", start=mark)["code"] == 5
        r.dev.press(3)  # unpaired: counted only, never journaled
        h = r.gw.wait_for("health", lambda m: m["uninvited"] == 1)
        assert h["journal_depth"] == 0
        r.gw.send({"type": "bind", "staff_id": "S042", "window": "W03"})
        h = r.gw.wait_for("health", lambda m: m["staff_id"] == "S042")
        assert h["uninvited"] == 1 and h["journal_depth"] == 0
        r.dev.wait_screen("idle")
        # A prompt bitmap: 16x8, a lit frame; drawn centred in the prompt area.
        w, h8 = 16, 8
        img = bytes([0xFF, 0xFF] + [0x80, 0x01] * 6 + [0xFF, 0xFF])
        r.gw.send({"type": "bitmap", "slot": 1, "width": w, "height": h8, "offset": 0,
                   "data": img})
        r.invite("INV-P")
        rows = r.dev.pixels()
        x0, y0 = (128 - w) // 2, (54 - h8) // 2
        assert rows[y0][x0:x0 + w] == [1] * w and rows[y0 + 1][x0 + 1:x0 + w - 1] == [0] * 14
        assert rows[y0 - 1][x0:x0 + w] == [0] * w
        r.dev.press(3)
        assert r.event(_inv("INV-P"))["score"] == 3
        # Settings survive a restart: still paired, same key, boot + 1.
        r.dev.kill()
        mark = r.gw.mark()
        r.dev.start()
        hello = r.gw.wait_for("hello", start=mark)
        assert hello["paired"] == 1 and hello["staff_id"] == "S042"
        assert hello["boot"] == r.hello["boot"] + 1
    finally:
        r.close()


def test_full_journal_refuses_invitations(tmp_path, fw_cache):
    r = Rig(tmp_path, fw_cache, board={"storage": {"journal_slots": 3}}, auto_ack=False)
    try:
        r.dev.wait_screen("idle")
        for i in range(3):
            r.invite("F%d" % i)
            r.dev.press(5)
            r.dev.wait_screen("thanks")
        r.dev.wait_screen("full")
        mark = r.gw.mark()
        r.gw.send({"type": "invite", "invitation": "F9", "cases": ["C1"], "timeout_s": 5})
        assert r.gw.wait_for("error", start=mark)["code"] == 4
        assert r.dev.screen() == "full"
        evs = r.gw.received("event")
        r.gw.ack("EV-T1", {(e["boot"], e["event_seq"]) for e in evs})
        r.dev.wait_screen("idle")
        r.invite("F10")
    finally:
        r.close()


def test_boot_counter_never_repeats(tmp_path, fw_cache):
    r = Rig(tmp_path, fw_cache)
    try:
        boots = [r.hello["boot"]]
        for _ in range(2):
            r.dev.kill()
            mark = r.gw.mark()
            r.dev.start()
            boots.append(r.gw.wait_for("hello", start=mark)["boot"])
        assert boots == [boots[0], boots[0] + 1, boots[0] + 2]
        # A lost boot file cannot roll it back: the journal remembers.
        r.dev.press(1)
        r.event(None)
        r.dev.kill()
        os.remove(r.dev.flash / "boot")
        mark = r.gw.mark()
        r.dev.start()
        assert r.gw.wait_for("hello", start=mark)["boot"] == boots[-1] + 1
    finally:
        r.close()


def test_gateway_sized_frames_at_64k(tmp_path, fw_cache):
    """The gateway's real traffic at pairing: full-screen bitmaps in 512-byte
    parts (gateway/devices/commands.py BITMAP_CHUNK), a 20-reason config, a 40-case
    batch, in the 64K budget (protocol.rx reads each frame in place:
    firmware/README.md has the heap)."""
    r = Rig(tmp_path, fw_cache, heap="64K")
    try:
        r.dev.wait_screen("idle")
        img = bytes([0xAA, 0x55] * 512)  # 128 x 64, a checkerboard
        # Confirmed one by one, as the gateway's downlink does (docs/link.md):
        # a frame the device had no heap for is sent again.
        for slot in (0, 1, 2, 3, 16, 17):
            for off in range(0, 1024, 512):
                r.gw.command({"type": "bitmap", "slot": slot, "width": 128, "height": 64,
                              "offset": off, "data": img[off:off + 512]})
        r.gw.command({"type": "config", "invite_timeout_s": 10, "heartbeat_s": 1,
                      "stuck_ms": 400, "reasons_version": "t2",
                      "reasons": ["A%02d" % i for i in range(20)]})
        r.invite("BIG", cases=["2026-CASE-%04d" % i for i in range(40)])
        rows = r.dev.pixels()
        assert rows[0][:4] == [1, 0, 1, 0] and rows[0][8:12] == [0, 1, 0, 1]
        r.dev.press(2)
        r.dev.wait_screen("reasons")
        r.dev.press(4)  # key 2: A01
        for _ in range(5):
            r.dev.press(1)  # pages 2..5, then confirm on the last
        r.dev.wait_screen("thanks")
        ev = r.event(_inv("BIG"))
        assert (ev["score"], ev["reasons"]) == (2, ["A01"])
        assert r.dev.alive()
    finally:
        r.close()
