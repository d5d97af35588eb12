"""kill -9 of a forwarder process mid-stream, then a restart: nothing is
lost (every outbox row ends delivered, every record arrives), duplicates
upstream are allowed and dropped by the idempotency key."""

import pytest
from support.upstream import (
    Feeder,
    Receiver,
    forwarder_process,
    make_records,
    outbox_states,
    wait_for,
)

from gateway.store import db


@pytest.mark.parametrize("kind", ["mqtt", "http"])
def test_kill9_forwarder_mid_stream_then_restart(tmp_path, mosquitto, kind):
    if kind == "mqtt":
        rx = Receiver(tmp_path, "mqtt", port=mosquitto.port, topic="hcp/records/#").start()
        settings = {"host": "127.0.0.1", "port": mosquitto.port, "window": 10, "batch": 4}
    else:
        rx = Receiver(tmp_path, "http").start()
        settings = {"url": rx.url + "/records", "batch": 4, "timeout_s": 2}
    settings.update({"backoff_min_s": 0.05, "backoff_max_s": 0.3, "poll_s": 0.02})
    dbp = tmp_path / "hall.db"
    db.open_db(dbp).close()
    recs = make_records(10, 200)
    feeder = Feeder(dbp, ["province"], recs, chunk=25, every=0.005)
    proc = forwarder_process(kind, dbp, "province", settings)
    kills = 0
    try:
        feeder.start()
        for fraction in (0.2, 0.5):  # two crashes at different points of the stream
            assert wait_for(lambda f=fraction: rx.summary()["unique"] >= f * len(recs), 30)
            proc.kill()
            proc.wait()
            kills += 1
            mid = outbox_states(dbp, "province")
            proc = forwarder_process(kind, dbp, "province", settings)
        feeder.join(30)
        assert wait_for(lambda: outbox_states(dbp, "province")["delivered"] == len(recs), 30)
        s = rx.wait_unique(len(recs), 20)
    finally:
        proc.kill()
        proc.wait()
        rx.stop()
    assert kills == 2 and mid["delivered"] < len(recs)  # the kills fell mid-stream
    assert s["unique"] == len(recs), s
    assert s["without_key"] == 0
