"""Issue 7, done when: the gateway with simulated devices, its dashboard in
headless Chromium (the Debian package, driven by Playwright), and what a
person would see: every window listed, an offline device flagged after its
heartbeats stop, a new rating appearing without reload, a 差评 alert shown.
A screenshot is saved under artifacts/ (its path is printed)."""

import os
import queue
import threading
import time

import pytest
from support.fakedev import FakeDevice, PtyTransport
from support.gwfixtures import connect, dead_http_upstream, invite, pair
from support.gwharness import ROOT, TOKEN, InProcess, api, write_config

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STAFF = [("A01", "S-1001", "张三"), ("A02", "S-1002", "李四"), ("A03", "S-1003", "王五"),
         ("A04", "S-1004", "赵六"), ("B01", "S-2001", "陈晓"), ("B02", "S-2002", "刘芳")]
WAIT_MS = 8000


class Fleet(threading.Thread):
    """Owns every fake device: sends their heartbeats (health) every
    `every_s` and runs what the test asks for (`do`) on the same thread, so
    a device is never driven by two threads at once."""

    def __init__(self, every_s=0.5):
        super().__init__(daemon=True)
        self.devices = []
        self.beating = set()
        self.every_s = every_s
        self.q = queue.Queue()
        self.halt = threading.Event()

    def do(self, fn, timeout=15.0):
        box = queue.Queue()
        self.q.put((fn, box))
        ok, value = box.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def run(self):
        next_beat = 0.0
        while not self.halt.is_set():
            try:
                fn, box = self.q.get(timeout=0.05)
            except queue.Empty:
                pass
            else:
                try:
                    box.put((True, fn()))
                except BaseException as err:  # handed to the test thread
                    box.put((False, err))
            for dev in self.devices:
                dev.poll(0)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.every_s
                for dev in self.devices:
                    if dev.device_id in self.beating:
                        dev.health()


def _rate(gw, dev, window, case, score, reasons=()):
    invite(gw, dev, window, [case])
    dev.rate(score, reasons)
    dev.wait(lambda: not dev.journal)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian package chromium is not installed (make test installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_in_chromium(tmp_path, browser):
    byid = tmp_path / "by-id"
    byid.mkdir()
    conf = write_config(tmp_path, ports=[str(byid / "*")], upstreams=[dead_http_upstream()],
                        device={"heartbeat_s": 1, "offline_after_missed": 2},
                        alerts={"offline_after_s": 1})
    fleet = Fleet()
    transports = []
    with InProcess(conf) as gw:
        fleet.start()
        try:
            devs = {}
            for i, (window, staff, name) in enumerate(STAFF):
                t = PtyTransport(str(byid), "usb-EV-%02d" % i)
                transports.append(t)
                dev = FakeDevice("EV-%02d" % i, t, boot=2, fw="1.4.%d" % (i % 2))
                fleet.do(lambda dev=dev, window=window, staff=staff, name=name: (
                    connect(dev, gw), pair(gw, dev, staff, window, staff_name=name)))
                fleet.devices.append(dev)
                fleet.beating.add(dev.device_id)
                devs[window] = dev
            # some of today's traffic before the page opens
            fleet.do(lambda: [_rate(gw, devs["A01"], "A01", "P-1", 5), _rate(gw, devs["A02"], "A02", "P-2", 4),
                              _rate(gw, devs["A03"], "A03", "P-3", 3), _rate(gw, devs["B01"], "B01", "P-4", 5),
                              devs["B02"].press(5), devs["B02"].wait(lambda: not devs["B02"].journal)])

            # The page loads without the token but shows no data; the API refuses.
            assert api(gw.port, "GET", "/api/dashboard", token=None)[0] == 401
            # The page's CSP forbids eval, which Playwright's wait_for_function
            # uses; tests/test_sec_api_tls.py checks the page under its CSP.
            page = browser.new_page(viewport={"width": 1440, "height": 1000}, bypass_csp=True)
            page.goto("http://127.0.0.1:%d/" % gw.port)
            page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
            assert page.is_hidden("#app")
            page.fill("#token", "wrong-token-0000000000")
            page.click("#login button")
            page.wait_for_selector("#login-error:has-text('令牌错误')", timeout=WAIT_MS)
            page.fill("#token", TOKEN)
            page.click("#login button")
            page.wait_for_selector("#app:not([hidden])", timeout=WAIT_MS)

            # Every window listed, online, with its staff.
            page.wait_for_function("document.querySelectorAll('.tile').length === %d" % len(STAFF),
                                   timeout=WAIT_MS)
            tiles = page.eval_on_selector_all(
                ".tile", "els => els.map(e => [e.dataset.window, e.dataset.online, e.innerText])")
            assert sorted(t[0] for t in tiles) == sorted(w for w, _, _ in STAFF)
            assert all(t[1] == "true" for t in tiles), tiles
            for window, staff, name in STAFF:
                text = next(t[2] for t in tiles if t[0] == window)
                assert staff in text and name in text, text
            page.evaluate("window.__no_reload = 'still here'")

            # A device whose heartbeats stop is flagged offline, listed first, alerted.
            fleet.beating.discard(devs["A03"].device_id)
            page.wait_for_selector(".tile[data-window='A03'][data-online='false'].critical", timeout=WAIT_MS)
            assert page.eval_on_selector(".tile", "e => e.dataset.window") == "A03"
            page.wait_for_selector("#alerts li[data-rule='device_offline'][data-id='device_offline/EV-02']",
                                   timeout=WAIT_MS)
            assert "A03" in page.inner_text("#alerts li[data-rule='device_offline']")

            # A new rating shows up without reloading the page.
            cell = "#by-window tr[data-row='window:A01'] td[data-col='good']"
            assert page.inner_text(cell) == "1"
            fleet.do(lambda: _rate(gw, devs["A01"], "A01", "P-5", 4))
            page.wait_for_function("document.querySelector(\"%s\").innerText === '2'" % cell, timeout=WAIT_MS)
            assert page.evaluate("window.__no_reload") == "still here"

            # A 差评 raises the call-back alert, with its reasons.
            fleet.do(lambda: _rate(gw, devs["A02"], "A02", "P-6", 1, ["R1", "R3"]))
            page.wait_for_selector("#alerts li[data-rule='bad_rating']", timeout=WAIT_MS)
            alert = page.inner_text("#alerts li[data-rule='bad_rating']")
            assert "A02" in alert and "李四" in alert and "服务态度差" in alert, alert
            assert "业务不熟练" in page.inner_text("#bad-today")
            assert page.inner_text("#by-window tr[data-row='window:A02'] td[data-col='bad']") == "1"
            # the 差评 share of A02 this month (1 of 2) breaks the 5% rule too
            page.wait_for_selector("#alerts li[data-rule='window_bad_share'][data-id='window_bad_share/A02']",
                                   timeout=WAIT_MS)
            assert page.evaluate("window.__no_reload") == "still here"

            # An invitation nobody answers shows in today's "no answer" (无应答).
            assert page.inner_text("[data-total='expired'] b") == "0"
            gw.gw.cfg.device.expire_grace_s = 0
            fleet.do(lambda: (invite(gw, devs["B01"], "B01", ["P-7"], timeout_s=1),
                              setattr(devs["B01"], "invitation", None)))
            assert gw.gw.invitations.expire(now=time.time() + 5) == 1
            page.wait_for_function("document.querySelector(\"[data-total='expired'] b\").innerText === '1'",
                                   timeout=WAIT_MS)

            # Upstream: the dead target's backlog is shown.
            pending = int(page.inner_text("#targets [data-target='prov'] dd[data-col='pending']"))
            assert pending == 6

            shots = os.path.join(ROOT, "artifacts")
            os.makedirs(shots, exist_ok=True)
            path = os.path.join(shots, "dashboard.png")
            page.screenshot(path=path, full_page=True)
            print("\nscreenshot: %s" % path)
            assert os.path.getsize(path) > 10_000
        finally:
            fleet.halt.set()
            fleet.join(5)
    for t in transports:
        t.close()
