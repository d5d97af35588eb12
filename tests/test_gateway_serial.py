"""Serial ingest on real ptys: garbage is counted, a port that disappears is
re-opened (explicit path) or found again under a new name (glob) without
disturbing the other ports."""

import random
import time

from support.fakedev import FakeDevice, PtyTransport
from support.gwfixtures import connect, dead_http_upstream, pair
from support.gwharness import InProcess, wait_for, write_config

from protocol.reader import Reader


def test_ports_come_and_go_without_disturbing_the_others(tmp_path):
    byid = tmp_path / "by-id"
    byid.mkdir()
    fixed = tmp_path / "ttyFIXED"  # an explicit path, not a glob
    conf = write_config(tmp_path, ports=[str(byid / "*"), str(fixed)], upstreams=[dead_http_upstream()])
    ta = PtyTransport(str(byid), "usb-A")
    tb = PtyTransport(str(byid), "usb-B")
    tc = PtyTransport(str(tmp_path), "ttyFIXED")
    spare = []
    with InProcess(conf) as gw:
        a, b, c = (connect(FakeDevice(n, t), gw) for n, t in (("EV-A", ta), ("EV-B", tb), ("EV-C", tc)))
        for dev, n in ((a, 1), (b, 2), (c, 3)):
            pair(gw, dev, "S%d" % n, "W%d" % n)

        # Garbage on A's line: counted, never fatal; the next frame gets through.
        rng = random.Random(7)
        ta.write(bytes(rng.randrange(256) for _ in range(3000)) + b"\x00")
        ta.write(b"\x05\x11\x22\x33\x44\x00")  # a COBS packet with a bad CRC
        eid = a.press(5)
        a.wait(lambda: eid in a.acked)
        port_a = [p for p in gw.gw.serial.status() if p["path"].endswith("usb-A")][0]
        assert sum(port_a["errors"].values()) >= 2 and port_a["open"]

        # A is unplugged, C's device file vanishes: B carries on.
        ta.close()
        tc.close()
        for _ in range(5):
            eid = b.press(4)
            b.wait(lambda eid=eid: eid in b.acked)
        wait_for(lambda: not [p for p in gw.gw.serial.status() if p["path"] == str(fixed) and p["open"]],
                 what="fixed port closed")
        time.sleep(1.0)  # a few back-off rounds on the missing path
        st = [p for p in gw.gw.serial.status() if p["path"] == str(fixed)][0]
        assert st["failures"] >= 2 and not st["open"]

        # A comes back under a new name (glob); C's path comes back (explicit).
        ta2 = PtyTransport(str(byid), "usb-A-renamed")
        tc2 = PtyTransport(str(tmp_path), "ttyFIXED")
        spare += [ta2, tc2]
        for dev, t in ((a, ta2), (c, tc2)):
            dev.t = t
            dev.reader = Reader()
            eid = dev.press(3)  # journaled while away
            connect(dev)
            dev.resend()
            dev.wait(lambda dev=dev, eid=eid: eid in dev.acked and not dev.journal)
        paths = {p["path"]: p for p in gw.gw.serial.status()}
        assert paths[str(byid / "usb-A-renamed")]["open"] and paths[str(fixed)]["open"]
        assert paths[str(fixed)]["opens"] == 2
        assert str(byid / "usb-A") not in paths  # left the glob: forgotten
    for t in (tb, *spare):
        t.close()


def test_a_port_that_takes_no_data_does_not_hold_up_the_others(tmp_path):
    byid = tmp_path / "by-id"
    byid.mkdir()
    conf = write_config(tmp_path, ports=[str(byid / "*")], upstreams=[dead_http_upstream()])
    ta = PtyTransport(str(byid), "usb-A")
    tb = PtyTransport(str(byid), "usb-B")
    with InProcess(conf) as gw:
        a, b = connect(FakeDevice("EV-A", ta), gw), connect(FakeDevice("EV-B", tb), gw)
        pair(gw, a, "S1", "W1")
        pair(gw, b, "S2", "W2")
        # A stops reading; the gateway keeps sending it big images.
        import base64
        img = base64.b64encode(bytes(4096)).decode()  # 4096 x 8 pixels
        t0 = time.monotonic()
        codes = []
        for _ in range(40):
            code, body = gw.api("POST", "/api/devices/EV-A/bitmaps",
                                {"slot": 1, "width": 4096, "height": 8, "data": img, "store": False})
            codes.append(code)
        assert set(codes) == {200, 409} and "not taking data" in body["error"]
        assert time.monotonic() - t0 < 5
        port_a = [p for p in gw.gw.serial.status() if p["path"].endswith("usb-A")][0]
        assert port_a["out_waiting"] > 0 and port_a["dropped_out"] > 0
        # B's events are ACKed promptly all the while.
        for _ in range(20):
            t = time.monotonic()
            eid = b.press(3)
            b.wait(lambda eid=eid: eid in b.acked)
            assert time.monotonic() - t < 0.5
        # A reads again: what was queued arrives, frames whole (its reader resyncs).
        a.wait(lambda: a.got("bitmap"), timeout=5)
        eid = a.press(4)
        a.wait(lambda: eid in a.acked, timeout=5)
    ta.close()
    tb.close()
