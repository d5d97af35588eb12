"""Power cuts: the firmware is killed with SIGKILL at random moments while
citizens rate, then boots again from the same flash directory. Afterwards no
rating the device thanked for may be missing at the gateway, none may arrive
twice under different event ids, and no event id may ever name two
different events (boot numbers never repeat)."""

import json
import random
import threading

import pytest
from support.fakegw import FakeGateway
from support.simdevice import SimDevice, install

from simulator.hall import DEFAULT_HEAP
from tools.provision import write_key_dir

KEY = bytes(range(32))
CUTS = 30


@pytest.fixture
def rig(tmp_path, tmp_path_factory):
    gw = FakeGateway(config={"invite_timeout_s": 10, "heartbeat_s": 1, "stuck_ms": 2000,
                             "reasons_version": "t1", "reasons": []})
    gw.set_key(KEY)
    flash = tmp_path / "flash"
    main = install(flash, tmp_path_factory.mktemp("fw-mpy-cut"))
    write_key_dir(flash, KEY)  # what `hcp tool provision` writes over USB
    (flash / "pair.json").write_text(json.dumps({"staff_id": "S001", "window": "W01"}))
    # The simulator's heap: the 64K budget (simulator/hall.py DEFAULT_HEAP).
    dev = SimDevice(flash, gw.path, device_id="EV-CUT", main=main, heap=DEFAULT_HEAP)
    yield gw, dev
    dev.kill()
    gw.close()


def _session(gw, dev, rng, n, thanked):
    """Rate invitations until the device dies; record the ones thanked."""
    while True:
        inv = "INV-%d" % n[0]
        n[0] += 1
        gw.send({"type": "invite", "invitation": inv, "cases": ["C1"], "timeout_s": 10})
        dev.wait_screen("invited", timeout=3)
        star = rng.choice((5, 4, 3, 2, 1))
        dev.press(star)
        if star <= 2:
            dev.wait_screen("reasons", timeout=3)
            dev.press(rng.choice((5, 4)))  # tick reason 1 or 2
            dev.press(1)  # next page
            dev.press(1)  # confirm
        dev.wait_screen("thanks", timeout=3)
        thanked[inv] = star
        if rng.random() < 0.3:
            # A second tap during thanks now and then, just before the next
            # invitation: ignored, never the next invitation's rating (the
            # device takes a turn's buttons before its frames).
            dev.press(3)


def test_power_cuts_lose_and_duplicate_nothing(rig):
    gw, dev = rig
    rng = random.Random(20261124)
    thanked = {}
    n = [0]
    boots = []
    for _ in range(CUTS):
        (dev.flash / "screen.txt").unlink(missing_ok=True)
        mark = gw.mark()
        dev.start()
        boots.append(gw.wait_for("hello", start=mark)["boot"])
        killer = threading.Timer(rng.uniform(0.0, 0.4), dev.kill)
        killer.start()
        try:
            _session(gw, dev, rng, n, thanked)
        except AssertionError:
            pass  # the cut came: the device is gone mid-session
        killer.join()
        dev.kill()
    # Power back for good: everything still in the journal drains.
    mark = gw.mark()
    dev.start()
    boots.append(gw.wait_for("hello", start=mark)["boot"])
    gw.wait_for("health", lambda m: m["journal_depth"] == 0, start=mark, timeout=20)
    dev.kill()

    assert boots == list(range(boots[0], boots[0] + len(boots)))  # never reused
    assert gw.conflicts == 0  # no event id named two different events
    ratings = {}
    for (_, boot, seq), ev in gw.events.items():
        if ev["kind"] == "rating":
            ratings.setdefault(ev["invitation"], []).append((boot, seq, ev["score"]))
    # Nothing thanked is lost, with the score pressed.
    assert len(thanked) >= 10, "too few ratings completed to say anything"
    for inv, star in thanked.items():
        assert inv in ratings, "thanked rating %s lost" % inv
        assert ratings[inv][0][2] == star
    # One rating per invitation: a retransmission keeps its event id.
    assert all(len(v) == 1 for v in ratings.values()), ratings
    print("cuts %d, thanked %d, ratings %d, events %d, resent %d" % (
        CUTS, len(thanked), len(ratings), len(gw.events), gw.duplicates))
    # Every 差评 carried a reason.
    for (_, _, _), ev in gw.events.items():
        if ev["kind"] == "rating" and ev["score"] <= 2:
            assert ev["reasons"]
