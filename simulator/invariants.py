"""The invariants of docs/design.md §6, checked from what really happened.

Inputs are plain data, so the check is the same whoever gathered them:
- the **ledger**: what the simulator's citizens did, one Attempt per
  invitation (cases, the score and reasons pressed, whether the screen said
  thanks, whether a power cut fell inside the rating);
- the **upstream**: every record the upstream receiver got, duplicates
  included (dicts in the provincial field names of docs/link.md);
- optional end-of-run **counters** from devices and the gateway.

"Thanked" means the device showed its thanks, which it does only after the
rating is in its journal. A power cut can fall between the journal write and
the thanks screen: such a rating is durable although nobody saw the thanks,
so an interrupted attempt whose rating arrives upstream counts as thanked (it
is neither lost nor invented); one that does not arrive is not lost either.
"""

from collections import defaultdict


class Attempt:
    """One invitation as the simulator drove it."""

    __slots__ = ("device_id", "invitation", "cases", "score", "reasons", "thanked",
                 "interrupted", "outcome")

    def __init__(self, device_id, invitation, cases, score=None, reasons=(), thanked=False,
                 interrupted=False, outcome="rated"):
        self.device_id = device_id
        self.invitation = invitation
        self.cases = list(cases)
        self.score = score  # None: the citizen walked away
        self.reasons = tuple(reasons)
        self.thanked = thanked
        self.interrupted = interrupted  # a power cut fell between the last press and the thanks
        self.outcome = outcome  # rated | unrated | cancelled


def check(attempts, upstream, uninvited_pressed=0, counters=None):
    """Return the report dict; report["ok"] is True only if every invariant holds."""
    by_case = {}
    for a in attempts:
        for case in a.cases:
            by_case[case] = a
    keys_seen = defaultdict(int)
    rated_events = {}  # eventId -> (score, reasons, device) as first seen
    event_cases = defaultdict(set)
    invented = 0
    invented_examples = []
    no_reason = 0
    mismatched = 0
    unrated_records = 0
    for rec in upstream:
        key = rec.get("idempotencyKey")
        keys_seen[key] += 1
        if keys_seen[key] > 1:
            continue  # a duplicate on the wire; the key dedupes it
        attempt = by_case.get(rec.get("projectNo"))
        if not rec.get("rated", True):
            unrated_records += 1
            if attempt is None:
                invented += 1
            continue
        score = rec.get("satisfaction")
        reasons = tuple(x for x in str(rec.get("evalDetail") or "").split(",") if x)
        if score is not None and score <= 2 and not reasons:
            no_reason += 1
        if attempt is None or attempt.score is None:
            invented += 1  # nobody pressed this (or it was an uninvited press)
            if len(invented_examples) < 5:
                invented_examples.append(dict(rec, why="no citizen pressed it" if attempt is None
                                              else "the citizen walked away (%s)" % attempt.outcome))
            continue
        if attempt.score != score or tuple(sorted(attempt.reasons)) != tuple(sorted(reasons)):
            mismatched += 1
            invented += 1
            continue
        eid = rec.get("eventId")
        rated_events.setdefault(eid, (score, reasons, attempt))
        event_cases[eid].add(rec.get("projectNo"))

    arrived = {id(v[2]) for v in rated_events.values()}
    thanked = 0
    lost = 0
    lost_examples = []
    for a in attempts:
        if a.score is None:
            continue
        if a.thanked or (a.interrupted and id(a) in arrived):
            thanked += 1
            if id(a) not in arrived:
                lost += 1
                if len(lost_examples) < 5:
                    lost_examples.append({"device_id": a.device_id, "invitation": a.invitation,
                                          "cases": a.cases, "score": a.score, "reasons": list(a.reasons)})

    batches = [a for a in attempts if len(a.cases) > 1 and id(a) in arrived]
    batches_ok = True
    for eid, (_, _, a) in rated_events.items():
        if len(a.cases) > 1 and event_cases[eid] != set(a.cases):
            batches_ok = False
    # One rating per invitation: two event ids for the same attempt is a double rating.
    per_attempt = defaultdict(int)
    for _, _, a in rated_events.values():
        per_attempt[id(a)] += 1
    double_rated = sum(1 for n in per_attempt.values() if n > 1)

    duplicates = sum(n - 1 for n in keys_seen.values())
    report = {
        "invited": len(attempts),
        "thanked": thanked,
        "unrated": sum(1 for a in attempts if a.outcome == "unrated"),
        "uninvited": uninvited_pressed,
        "upstream_records": len(upstream),
        "upstream_unique": len(rated_events),
        "upstream_unrated": unrated_records,
        "upstream_duplicates": duplicates,
        "lost": lost,
        "lost_examples": lost_examples,
        "invented": invented,
        "invented_examples": invented_examples,
        "mismatched": mismatched,
        "bad_without_reason": no_reason,
        "double_rated": double_rated,
        "batches": len(batches),
        "batches_ok": batches_ok,
    }
    ok = (lost == 0 and invented == 0 and no_reason == 0 and double_rated == 0 and batches_ok
          and report["upstream_unique"] == thanked)
    if counters is not None:
        report["counters"] = counters
        report["counters_agree"] = counters_agree(counters)
        ok = ok and report["counters_agree"]
    report["ok"] = ok
    return report


def counters_agree(c):
    """End of run, after the drain: nothing left in device journals or the
    gateway outbox, and the gateway stored exactly the events devices sent."""
    agree = c.get("device_journal_depth", 0) == 0 and c.get("outbox_pending", 0) == 0
    if "gateway_rated_events" in c and "upstream_unique" in c:
        agree = agree and c["gateway_rated_events"] == c["upstream_unique"]
    return agree
