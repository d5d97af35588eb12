"""Invitations (一次一评): cancel, a device that refuses (journal full), a new
invitation over an open one, first answer wins, `hcp gateway invite/status`."""

import json
import subprocess
import time

from support.gwfixtures import connect, invite, pair, records, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)
from support.gwharness import HCP, wait_for


def test_cancel_refuse_supersede_and_first_answer_wins(hall):
    dev = connect(hall.device("EV-1"))
    pair(hall, dev, "S1", "W1")
    # Cancel: the device drops it; no event, no record.
    inv = invite(hall, dev, "W1", ["P-C"])
    code, body = hall.api("POST", "/api/invitations/%s/cancel" % inv["invitation"])
    assert code == 200 and body["state"] == "cancelled" and body["sent"]
    dev.wait(lambda: dev.invitation is None)
    code, body = hall.api("POST", "/api/invitations/%s/cancel" % inv["invitation"])
    assert code == 400

    # The device refuses (journal full): error 4 answering the invite's seq.
    code, inv2 = hall.api("POST", "/api/invitations", {"window": "W1", "cases": ["P-F"]})
    dev.wait(lambda: dev.invitation is not None)
    seq = dev.got("invite")[-1]["seq"]
    dev.invitation = None
    dev.send({"type": "error", "code": 4, "ref_seq": seq, "detail": "journal full"})
    wait_for(lambda: hall.api("GET", "/api/invitations/" + inv2["invitation"])[1]["state"] == "refused",
             what="refused")

    # A new invitation over an open one: the device closes the old as unrated.
    a = invite(hall, dev, "W1", ["P-A"])
    b = invite(hall, dev, "W1", ["P-B1", "P-B2"])
    eid = dev.rate(3)
    dev.wait(lambda: eid in dev.acked and not dev.journal)
    got = {r["projectNo"]: r for r in records(hall.db)}
    assert got["P-A"]["rated"] is False and got["P-B1"]["satisfaction"] == 3
    assert got["P-B2"]["satisfaction"] == 3 and "P-C" not in got and "P-F" not in got
    assert hall.api("GET", "/api/invitations/" + a["invitation"])[1]["state"] == "unrated"
    assert hall.api("GET", "/api/invitations/" + b["invitation"])[1]["state"] == "rated"

    # A second answer to an answered invitation: stored for audit, no records.
    n = len(records(hall.db))
    late = dev.event("rating", 5, (), b["invitation"])
    dev.wait(lambda: late in dev.acked)
    assert len(records(hall.db)) == n
    assert rows(hall.db, "SELECT count(*) FROM events WHERE invitation = ?", b["invitation"])[0][0] == 2
    assert hall.gw.committer.stats["late"] == 1


def test_offline_device_cannot_be_invited(hall):
    dev = connect(hall.device("EV-2"))
    pair(hall, dev, "S2", "W2")
    # Its answers to the pairing commands (`done`) all in first: a late one
    # would mark it online again right after the forced tick below.
    pending = hall.gw.commands.downlink.pending
    dev.wait(lambda: not [p for p in list(pending.values()) if p.device_id == "EV-2"], timeout=10)
    time.sleep(0.2)
    dev.poll(0.05)
    hall.gw.monitor.tick(now=time.time() + 1000)
    code, body = hall.api("POST", "/api/invitations", {"window": "W2", "cases": ["P"]})
    assert code == 409 and "not connected" in body["error"]
    dev.health()  # back
    wait_for(lambda: hall.gw.registry.get("EV-2").online, what="online")
    invite(hall, dev, "W2", ["P"])


def test_cli_invite_and_status(hall):
    dev = connect(hall.device("EV-3"))
    pair(hall, dev, "S3", "W3")
    conf = hall.cfg.path
    proc = subprocess.Popen([HCP, "gateway", "invite", "-c", conf, "--window", "W3", "--case", "P-1",
                             "--case", "P-2", "--task-code", "T-9"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    dev.wait(lambda: dev.invitation is not None, timeout=20)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    body = json.loads(out)
    assert [c["projectNo"] for c in body["cases"]] == ["P-1", "P-2"] and body["cases"][0]["taskCode"] == "T-9"
    eid = dev.rate(5)
    dev.wait(lambda: eid in dev.acked)
    proc = subprocess.run([HCP, "gateway", "status", "-c", conf], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["ingest"]["events"] == 1 and st["outbox"]["pending"] + st["outbox"]["delivered"] == 2
    proc = subprocess.run([HCP, "gateway", "devices", "-c", conf], capture_output=True, timeout=30)
    assert proc.returncode == 0 and b"EV-3" in proc.stdout and b"online" in proc.stdout
    proc = subprocess.run([HCP, "gateway", "invite", "-c", conf, "-w", "NOWHERE", "-p", "P"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 2 and b"no device is bound" in proc.stderr and b"Traceback" not in proc.stderr


def test_unanswered_invitation_expires_and_a_late_answer_still_counts(hall):
    # The device never answers (it was off, or the invite was lost on the
    # line): the gateway's sweep marks the invitation expired once its
    # timeout and the grace have passed. A rating the device journaled
    # (thanked) and delivers later still counts: the invitation becomes rated.
    dev = connect(hall.device("EV-4"))
    pair(hall, dev, "S4", "W4")
    dev5 = connect(hall.device("EV-5"))
    pair(hall, dev5, "S5", "W5")
    hall.gw.cfg.device.expire_grace_s = 0
    inv = invite(hall, dev, "W4", ["P-X1", "P-X2"], timeout_s=1)
    other = invite(hall, dev5, "W5", ["P-Y"], timeout_s=3600)  # still inside its timeout

    def state(i):
        return hall.api("GET", "/api/invitations/" + i["invitation"])[1]["state"]

    wait_for(lambda: state(inv) == "expired", timeout=15, what="expired by the gateway's own sweep")
    assert state(other) == "open"
    assert hall.gw.invitations.counts() == {"expired": 1, "open": 1}
    code, st = hall.api("GET", "/api/status")
    assert code == 200 and st["invitations_today"] == {"expired": 1, "open": 1}, st
    assert hall.gw.invitations.expire() == 0  # nothing more is due
    late = dev.event("rating", 4, (), inv["invitation"])
    dev.wait(lambda: late in dev.acked)
    wait_for(lambda: state(inv) == "rated", what="rated by the late answer")
    got = {r["projectNo"]: r for r in records(hall.db)}
    assert got["P-X1"]["satisfaction"] == 4 and got["P-X2"]["satisfaction"] == 4
    # An answered invitation never expires; the open one does when it is due.
    assert hall.gw.invitations.expire(now=time.time() + 10**6) == 1
    assert state(inv) == "rated" and state(other) == "expired"
