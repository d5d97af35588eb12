"""`GET /metrics`: the gateway in the Prometheus text format (version 0.0.4).

Everything here is read from counters the parts already keep (commit
thread stats, registry, forwarder status) and from the dashboard's last
snapshot; the one addition to the hot path is the ACK latency histogram,
fed by the commit thread once per batch (frame received -> ACK written),
one bisect per event.

    hcp_events_total{result}                 events committed (new) / duplicates absorbed
    hcp_frames_total                         accepted frames from devices
    hcp_frames_rejected_total{kind}          frames refused (badtag, replay, unpaired, ...)
    hcp_ack_latency_seconds                  histogram: frame received -> ACK written
    hcp_commit_batches_total{result}         group commits (ok / failed)
    hcp_commit_queue                         items waiting for the commit thread
    hcp_storage_alarm                        1 while the database refuses writes
    hcp_devices / hcp_devices_online         devices known / online
    hcp_outbox_pending{target}               undelivered records per target
    hcp_outbox_oldest_pending_age_seconds{target}
    hcp_outbox_rejected{target}              records the upstream refused for good
    hcp_forwarder_delivered_total{target}    records acknowledged by the upstream
    hcp_forwarder_sent_total{target}         records sent (including resends)
    hcp_forwarder_rejected_total{target}     refused for good since start
    hcp_forwarder_errors_total{target}       failed attempts (retried)
    hcp_forwarder_rate{target}               records delivered per second (last ~5 s)
    hcp_forwarder_connected{target}          1 if the link is up
    hcp_alerts_active{rule}                  active alerts per rule
    hcp_invitations_expired_total            invitations no answer came for (timeout + grace)
"""

import bisect

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACK_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Cumulative-on-render histogram. observe_since() runs on one thread
    (the commit thread); render() copies the counts (a torn read costs at
    most one batch's worth of skew between buckets and _count)."""

    def __init__(self, bounds=ACK_BUCKETS):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value):
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_since(self, starts, now):
        """One observation `now - t` per t in starts."""
        counts, bounds, pos, total = self.counts, self.bounds, bisect.bisect_left, 0.0
        for t in starts:
            v = now - t
            counts[pos(bounds, v)] += 1
            total += v
        self.sum += total
        self.count += len(starts)

    def quantile(self, q):
        """An estimate (linear within the bucket), None without data."""
        counts = list(self.counts)
        n = sum(counts)
        if not n:
            return None
        rank = q * n
        seen = 0
        lo = 0.0
        for i, c in enumerate(counts):
            hi = self.bounds[i] if i < len(self.bounds) else self.bounds[-1] * 2
            if seen + c >= rank and c:
                return lo + (hi - lo) * (rank - seen) / c
            seen += c
            lo = hi
        return lo

    def lines(self, name, help_text):
        counts = list(self.counts)
        out = ["# HELP %s %s" % (name, help_text), "# TYPE %s histogram" % name]
        acc = 0
        for bound, c in zip(self.bounds, counts[:-1], strict=True):
            acc += c
            out.append('%s_bucket{le="%s"} %d' % (name, _num(bound), acc))
        acc += counts[-1]
        out.append('%s_bucket{le="+Inf"} %d' % (name, acc))
        out.append("%s_sum %s" % (name, _num(self.sum)))
        out.append("%s_count %d" % (name, acc))
        return out


class Metrics:
    def __init__(self):
        self.ack_latency = Histogram()


def _num(v):
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def _label(v):
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Doc:
    def __init__(self):
        self.lines = []

    def metric(self, name, kind, help_text, samples):
        """samples: [(labels dict or None, value)]"""
        self.lines.append("# HELP %s %s" % (name, help_text))
        self.lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            if labels:
                lab = ",".join('%s="%s"' % (k, _label(v)) for k, v in sorted(labels.items()))
                self.lines.append("%s{%s} %s" % (name, lab, _num(value)))
            else:
                self.lines.append("%s %s" % (name, _num(value)))

    def text(self):
        return "\n".join(self.lines) + "\n"


def render(facts, histogram):
    """The exposition text. facts: {"ingest": committer stats, "queued",
    "alarm", "rejected": {kind: n}, "frames", "devices", "online",
    "forwarders": {name: status}, "outbox": {target: stats},
    "alerts": [alert, ...]}."""
    d = _Doc()
    ing = facts.get("ingest", {})
    d.metric("hcp_events_total", "counter", "Device events committed (new) and resends absorbed (duplicate).",
             [({"result": "new"}, ing.get("events", 0)), ({"result": "duplicate"}, ing.get("duplicates", 0))])
    d.metric("hcp_events_dropped_total", "counter", "Events refused because the commit queue was full.",
             [(None, ing.get("dropped", 0))])
    d.metric("hcp_frames_total", "counter", "Frames accepted from devices.", [(None, facts.get("frames", 0))])
    rej = facts.get("rejected", {})
    d.metric("hcp_frames_rejected_total", "counter", "Frames refused, by reason.",
             [({"kind": k}, v) for k, v in sorted(rej.items())] or [({"kind": "none"}, 0)])
    d.lines += histogram.lines("hcp_ack_latency_seconds", "Frame received to ACK written (after the FULL commit).")
    d.metric("hcp_commit_batches_total", "counter", "Group commits.",
             [({"result": "ok"}, ing.get("batches", 0)), ({"result": "failed"}, ing.get("failed_batches", 0))])
    d.metric("hcp_commit_queue", "gauge", "Items waiting for the commit thread.", [(None, facts.get("queued", 0))])
    d.metric("hcp_storage_alarm", "gauge", "1 while the database refuses writes.",
             [(None, 1 if facts.get("alarm") else 0)])
    d.metric("hcp_invitations_expired_total", "counter",
             "Invitations no device answer came for within their timeout and the grace.",
             [(None, facts.get("invitations_expired", 0))])
    d.metric("hcp_devices", "gauge", "Devices known to the gateway.", [(None, facts.get("devices", 0))])
    d.metric("hcp_devices_online", "gauge", "Devices online (heard within their heartbeats).",
             [(None, facts.get("online", 0))])
    fws = facts.get("forwarders", {})
    ob = facts.get("outbox", {})
    targets = sorted(set(fws) | set(ob))

    def per_target(name, kind, help_text, get):
        d.metric(name, kind, help_text, [({"target": t}, get(t)) for t in targets])

    per_target("hcp_outbox_pending", "gauge", "Undelivered records per upstream target.",
               lambda t: _pending(fws.get(t), ob.get(t)))
    per_target("hcp_outbox_oldest_pending_age_seconds", "gauge", "Age of the oldest undelivered record.",
               lambda t: (ob.get(t) or {}).get("oldest_pending_age_s", 0.0))
    per_target("hcp_outbox_rejected", "gauge", "Records the upstream refused for good (kept for an admin).",
               lambda t: (ob.get(t) or {}).get("rejected", 0))
    for key, kind, help_text in (("delivered", "counter", "Records acknowledged by the upstream since start."),
                                 ("sent", "counter", "Records sent since start (resends included)."),
                                 ("rejected", "counter", "Records refused for good since start."),
                                 ("errors", "counter", "Failed delivery attempts (retried)."),
                                 ("rate", "gauge", "Records delivered per second over the last ~5 s."),
                                 ("connected", "gauge", "1 if the upstream link is up.")):
        per_target("hcp_forwarder_%s%s" % (key, "_total" if kind == "counter" else ""), kind, help_text,
                   lambda t, key=key: (fws.get(t) or {}).get(key) or 0)
    by_rule = {}
    for a in facts.get("alerts", []):
        by_rule[a["rule"]] = by_rule.get(a["rule"], 0) + 1
    d.metric("hcp_alerts_active", "gauge", "Active alerts per rule.",
             [({"rule": r}, n) for r, n in sorted(by_rule.items())] or [({"rule": "none"}, 0)])
    return d.text()


def _pending(fw, ob):
    """The outbox's own count (the dashboard reads it); the forwarder's, which
    it refreshes only between sends, if the outbox's is missing."""
    if ob and ob.get("pending") is not None:
        return ob["pending"]
    return (fw or {}).get("backlog") or 0
