"""The peer benchmark's measuring machinery on our side: every event handed
to the real committer is ACKed after its FULL commit, and drained exactly
once from the outbox while ingest goes on."""

from bench import peer
from bench.common import Deadline


def test_ours_latency_measures_every_event(tmp_path):
    r = peer.ours_latency(str(tmp_path), 300, 10, Deadline(30))
    assert r["durable"] == 300 and r["synchronous"] == "FULL"
    assert 0 < r["p50_ms"] <= r["p99_ms"]


def test_ours_concurrent_drain_has_no_duplicates(tmp_path):
    r = peer.ours_duplicates(str(tmp_path), 500, 10, Deadline(30))
    assert r == {"delivered": 500, "unique": 500, "duplicates": 0, "missing": 0}
