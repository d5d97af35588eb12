"""/metrics (gateway/web/metrics.py): the Prometheus text format (HELP/TYPE
before samples, escaped labels, cumulative histogram buckets ending in +Inf
= _count), and the figures of a running gateway: events in, ACK latency,
outbox depth per target, forwarder counters, devices online; the token."""

import re
import urllib.error
import urllib.request

import pytest
from support.gwfixtures import connect, invite, pair
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import TOKEN, wait_for

from gateway.web import metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\})? (\S+)$')


def parse(text):
    """{(name, labels string): value}; asserts the exposition rules as it goes."""
    assert text.endswith("\n")
    out = {}
    typed = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in typed, "TYPE twice: %s" % name
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, "sample before its TYPE: %s" % name
        out[(name, m.group(3) or "")] = float(m.group(4))
    return out


def test_histogram_buckets_are_cumulative_and_quantiles_estimate():
    h = metrics.Histogram(bounds=(0.001, 0.01, 0.1))
    h.observe_since([10.0, 9.995, 9.95, 9.5], now=10.0)  # 0, 5 ms, 50 ms, 500 ms
    h.observe(0.001)  # on a bound: le="0.001"
    got = parse("\n".join(h.lines("x_seconds", "help")) + "\n")
    assert got[("x_seconds_bucket", 'le="0.001"')] == 2
    assert got[("x_seconds_bucket", 'le="0.01"')] == 3
    assert got[("x_seconds_bucket", 'le="0.1"')] == 4
    assert got[("x_seconds_bucket", 'le="+Inf"')] == 5 == got[("x_seconds_count", "")]
    assert got[("x_seconds_sum", "")] == pytest.approx(0.556)
    assert 0.01 < h.quantile(0.7) <= 0.1
    assert h.quantile(0.2) <= 0.001
    assert metrics.Histogram().quantile(0.5) is None


def test_render_escapes_labels_and_types_every_family():
    facts = {"ingest": {"events": 7, "duplicates": 2, "batches": 3, "failed_batches": 1, "dropped": 0},
             "queued": 4, "alarm": {"since": 1, "error": "x"}, "rejected": {"badtag": 5},
             "frames": 40, "devices": 3, "online": 2, "invitations_expired": 6,
             "forwarders": {'we"ird\\name': {"backlog": 11, "delivered": 100, "sent": 120, "rejected": 1,
                                              "errors": 6, "rate": 12.5, "connected": True}},
             "outbox": {'we"ird\\name': {"pending": 9, "oldest_pending_age_s": 130.0, "rejected": 1}},
             "alerts": [{"rule": "bad_rating"}, {"rule": "bad_rating"}, {"rule": "device_offline"}]}
    h = metrics.Histogram()
    h.observe(0.004)
    got = parse(metrics.render(facts, h))
    t = 'target="we\\"ird\\\\name"'
    assert got[("hcp_events_total", 'result="new"')] == 7
    assert got[("hcp_events_total", 'result="duplicate"')] == 2
    assert got[("hcp_frames_rejected_total", 'kind="badtag"')] == 5
    assert got[("hcp_storage_alarm", "")] == 1
    assert got[("hcp_commit_batches_total", 'result="failed"')] == 1
    assert got[("hcp_devices_online", "")] == 2 and got[("hcp_devices", "")] == 3
    assert got[("hcp_invitations_expired_total", "")] == 6
    assert got[("hcp_outbox_pending", t)] == 9  # the outbox's own count first
    assert got[("hcp_outbox_oldest_pending_age_seconds", t)] == 130.0
    assert got[("hcp_forwarder_delivered_total", t)] == 100
    assert got[("hcp_forwarder_errors_total", t)] == 6
    assert got[("hcp_forwarder_rate", t)] == 12.5
    assert got[("hcp_forwarder_connected", t)] == 1
    assert got[("hcp_alerts_active", 'rule="bad_rating"')] == 2
    assert got[("hcp_ack_latency_seconds_count", "")] == 1
    assert got[("hcp_ack_latency_seconds_bucket", 'le="0.005"')] == 1


def _get(port, path, token=TOKEN):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read().decode()


def test_metrics_of_a_running_gateway(hall):
    assert _get(hall.port, "/metrics", token=None)[0] == 401
    devs = []
    for i in range(2):
        dev = connect(hall.device("EV-%d" % i))
        pair(hall, dev, "S%d" % i, "A0%d" % i)
        devs.append(dev)
    for n in range(3):
        invite(hall, devs[0], "A00", ["P-%d" % n])
        devs[0].rate(5)
        devs[0].wait(lambda: not devs[0].journal)
    devs[1].press(4)
    devs[1].wait(lambda: not devs[1].journal)

    def scrape():
        code, ctype, text = _get(hall.port, "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4"), (code, ctype)
        return parse(text)

    # the outbox figures come from the dashboard's snapshot (about 1 s)
    got = wait_for(lambda: (lambda m: m if m[("hcp_outbox_pending", 'target="prov"')] == 3 else None)(scrape()),
                   timeout=5, what="outbox depth in /metrics")
    assert got[("hcp_events_total", 'result="new"')] == 4
    assert got[("hcp_ack_latency_seconds_count", "")] == 4
    assert got[("hcp_ack_latency_seconds_bucket", 'le="+Inf"')] == 4
    assert 0 < got[("hcp_ack_latency_seconds_sum", "")] < 4 * 0.5
    assert got[("hcp_devices_online", "")] == 2 and got[("hcp_invitations_expired_total", "")] == 0
    assert got[("hcp_frames_total", "")] == sum(d.frames for d in hall.gw.registry.all()) >= 8
    assert got[("hcp_forwarder_connected", 'target="prov"')] == 0  # nothing listens there
    assert got[("hcp_outbox_oldest_pending_age_seconds", 'target="prov"')] > 0
    # a resend is absorbed and counted, and its ACK is measured too
    inv = invite(hall, devs[0], "A00", ["P-9"])
    ev = devs[0].rate(3)
    devs[0].wait(lambda: not devs[0].journal)
    devs[0].send(dict(type="event", device_id="EV-0", boot=3, event_seq=ev[1], kind="rating", score=3,
                      reasons=[], invitation=inv["invitation"], time=0, uptime_ms=1))
    got = wait_for(lambda: (lambda m: m if m[("hcp_events_total", 'result="duplicate"')] == 1 else None)(scrape()),
                   timeout=5, what="duplicate counted")
    assert got[("hcp_events_total", 'result="new"')] == 5
    assert got[("hcp_ack_latency_seconds_count", "")] == 6
