"""A panel unplugged in a running hall (a virtual ESP32 board, the real
gateway, broker and upstream of simulator/hall.py): ratings keep being
journaled and delivered upstream; the device's health, the dashboard's
tile and the display_fault alert show the fault, and clear when the panel
is back."""

import time

from gateway import config
from gateway.web import alerts, dashboard
from simulator import upstream
from simulator.hall import SimHall


def _until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("no %s within %.0f s" % (what, timeout))


def test_display_fault_rules():
    d = {"device_id": "EV-1", "window": "A01", "staff_id": "S1", "online": True, "last_seen": 0,
         "stuck_buttons": [], "display_fault": True}
    got = alerts.evaluate({"now": 0, "devices": [d]}, config.Alerts())
    assert [(a["id"], a["severity"]) for a in got] == [("display_fault/EV-1", "warning")]
    assert "A01" in got[0]["text"] and "显示屏" in got[0]["text"]
    assert alerts.evaluate({"now": 0, "devices": [dict(d, display_fault=False)]}, config.Alerts()) == []
    tile = dict(d, clock_offset_s=None, paired=True, key_confirmed=True, journal_depth=0)
    assert ["warning", "显示屏无响应"] in dashboard._problems(tile, 0)


def test_panel_unplugged_in_a_running_hall(tmp_path):
    hall = SimHall(tmp_path / "hall", devices=1, seed=9, board="esp32", heartbeat_s=1)
    hall.start()
    try:
        w = hall.windows[0]
        dev = w.device

        def device():
            return hall.api.call("GET", "/api/devices/%s" % w.device_id)[1]

        def problems():
            snap = hall.api.call("GET", "/api/dashboard")[1] or {}
            tiles = [t for t in snap.get("windows") or () if t["device_id"] == w.device_id]
            return tiles[0]["problems"] if tiles else []

        def alert_ids():
            return [a["id"] for a in hall.api.call("GET", "/api/alerts")[1]["alerts"]]

        assert not device()["display_fault"]
        dev.board.set_panel("missing")
        _until(lambda: device()["display_fault"], 10, "display_fault in the device's health")
        _until(lambda: ["warning", "显示屏无响应"] in problems(), 15, "the fault on the dashboard")
        _until(lambda: "display_fault/%s" % w.device_id in alert_ids(), 15, "the display_fault alert")
        glass = dev.board.panel.transactions
        # A citizen still rates (the firmware takes the press, journals it,
        # sends it); nothing reaches the glass meanwhile.
        for i, star in enumerate((5, 2)):
            status, inv = hall.invite(w, ["P-%d" % i])
            assert status == 200, inv
            assert dev.wait_state("invited", timeout=10) == "invited"
            dev.press(star)
            if star <= 2:
                assert dev.wait_state("reasons", timeout=5) == "reasons"
                dev.press(5)  # reason 1
                dev.press(1)  # next page
                dev.press(1)  # confirm
            assert dev.wait_state("thanks", timeout=10) == "thanks"
        def rated():
            got = [r for r in upstream.records(hall.receivers["http"].db) if r.get("rated")]
            return got if len(got) >= 2 else None

        recs = _until(rated, 20, "both ratings upstream")
        assert sorted(r["satisfaction"] for r in recs) == [2, 5]
        assert dev.board.panel.transactions == glass
        assert device()["display_fault"] and device()["journal_depth"] == 0
        dev.board.set_panel("present")
        _until(lambda: not device()["display_fault"], 10, "the fault cleared")
        _until(lambda: "display_fault/%s" % w.device_id not in alert_ids(), 15, "the alert cleared")
        assert dev.board.panel.on and dev.board.panel.transactions > glass
    finally:
        hall.stop()
