"""The invariant checker itself must catch each kind of failure."""

from simulator.invariants import Attempt, check


def rec(case, eid, score=5, reasons="", rated=True, n=1):
    r = {"projectNo": case, "eventId": eid, "idempotencyKey": "%s/%d" % (eid, n), "rated": rated,
         "evalDetail": reasons}
    if rated:
        r["satisfaction"] = score
    return r


def base():
    return [
        Attempt("D1", "I1", ["P1"], 5, thanked=True),
        Attempt("D1", "I2", ["P2", "P3"], 1, ["R2"], thanked=True),
        Attempt("D2", "I3", ["P4"], None, outcome="unrated"),
    ]


def good_upstream():
    return [rec("P1", "D1:1:1"), rec("P2", "D1:1:2", 1, "R2", n=1), rec("P3", "D1:1:2", 1, "R2", n=2),
            rec("P4", "D2:1:1", rated=False)]


def test_clean_run_is_ok_and_duplicates_are_absorbed():
    up = good_upstream() + [good_upstream()[0]]
    r = check(base(), up)
    assert r["ok"], r
    assert (r["thanked"], r["upstream_unique"], r["upstream_duplicates"], r["lost"]) == (2, 2, 1, 0)
    assert r["batches"] == 1 and r["batches_ok"] and r["upstream_unrated"] == 1


def test_lost_rating_fails():
    r = check(base(), good_upstream()[1:])
    assert not r["ok"] and r["lost"] == 1


def test_invented_rating_fails():
    r = check(base(), good_upstream() + [rec("P999", "D9:1:1")])
    assert not r["ok"] and r["invented"] == 1
    wrong_score = good_upstream()
    wrong_score[0] = rec("P1", "D1:1:1", score=4)
    assert check(base(), wrong_score)["invented"] == 1


def test_half_a_batch_fails():
    r = check(base(), [x for x in good_upstream() if x["projectNo"] != "P3"])
    assert not r["ok"] and not r["batches_ok"]


def test_bad_rating_without_reason_fails():
    up = good_upstream()
    up[1] = rec("P2", "D1:1:2", 1, "", n=1)
    r = check(base(), up)
    assert not r["ok"] and r["bad_without_reason"] == 1


def test_double_rating_of_one_invitation_fails():
    r = check(base(), good_upstream() + [rec("P1", "D1:1:9")])
    assert not r["ok"] and r["double_rated"] == 1


def test_interrupted_rating_counts_as_thanked_only_if_it_arrived():
    attempts = base() + [Attempt("D2", "I4", ["P5"], 4, interrupted=True)]
    r = check(attempts, good_upstream())
    assert r["ok"] and r["thanked"] == 2
    r = check(attempts, good_upstream() + [rec("P5", "D2:2:1", 4)])
    assert r["ok"] and r["thanked"] == 3 and r["upstream_unique"] == 3


def test_counters_must_agree():
    r = check(base(), good_upstream(), counters={"device_journal_depth": 1, "outbox_pending": 0})
    assert not r["ok"] and not r["counters_agree"]
