"""Security review, finding 11b: 差评 reason codes are checked against the
hall's catalogue (config `[device] reasons`).

An event whose reason list was ["R1,R2,R3"] (one code with commas in it) was
counted as three reasons in the monthly report: codes are stored and sent
upstream joined by commas (`evalDetail`). `records.valid_reasons()` keeps
only catalogue codes without a comma or control character, each once, on a
差评 only; the event is never refused (a 差评 with no valid code stays a
差评, with no reason), and the drop is counted.

The commit thread calls it as it stores each event (gateway/store/commit.py), with
the configured catalogue, and counts what it drops (`reasons_dropped` in
/api/status): the gateway test below sends real frames and reads the stored
rows, the records and the monthly report."""


from support.gwfixtures import connect, invite, monthly_rows, pair, records, rows
from support.gwfixtures import hall as hall  # noqa: F401 (the fixture)

from gateway import records as rec
from gateway import report
from gateway.config import FALLBACK_REASONS, Hall

CATALOGUE = frozenset(code for code, _ in FALLBACK_REASONS)  # R1..R8


def test_only_catalogue_codes_of_a_bad_rating_are_kept():
    ok = ["R1", "R3"]
    assert rec.valid_reasons("rating", 2, ok, CATALOGUE) == (ok, 0)
    assert rec.valid_reasons("rating", 2, ok, CATALOGUE)[0] is ok  # nothing dropped: the list itself
    assert rec.valid_reasons("rating", 1, ["R1,R2,R3"], CATALOGUE) == ([], 1)
    assert rec.valid_reasons("rating", 1, ["R2", "R9", "R2", "R3", ""], CATALOGUE) == (["R2", "R3"], 3)
    assert rec.valid_reasons("rating", 5, [], CATALOGUE) == ([], 0)
    # Only a 差评 has reasons.
    assert rec.valid_reasons("rating", 3, ["R1"], CATALOGUE) == ([], 1)
    assert rec.valid_reasons("unrated", 0, ["R1"], CATALOGUE) == ([], 1)
    assert rec.valid_reasons("uninvited", 1, ["R1"], CATALOGUE) == ([], 1)
    # Not a string, or a control character: dropped, even when the catalogue has it.
    assert rec.valid_reasons("rating", 1, [1, None, "R1"], CATALOGUE) == (["R1"], 2)
    odd = frozenset(["A\x01", "B\x7f", "C\x85", "D,E", "F"])
    assert rec.valid_reasons("rating", 1, ["A\x01", "B\x7f", "C\x85", "D,E", "F"], odd) == (["F"], 4)
    # Any container of codes will do (the config's list).
    assert rec.valid_reasons("rating", 1, ["R8", "X"], [c for c, _ in FALLBACK_REASONS]) == (["R8"], 1)


def test_what_is_kept_is_what_the_report_counts_and_the_record_carries():
    hall = Hall(id="h", areaCode="330100", deptCode="D1")
    sent = {"ev1": (1, ["R1,R2,R3"]), "ev2": (2, ["R2", "R9", "R2\n", "R3"]), "ev3": (1, ["R8"])}
    tally = report.Tally()
    for eid, (score, reasons) in sent.items():
        kept, _ = rec.valid_reasons("rating", score, reasons, CATALOGUE)
        stored = ",".join(kept)  # events.reasons, as the commit thread writes it
        tally.add("rating", score, stored)
        ((_, text),) = rec.texts(eid, "EV-1", "rating", score, stored, 1795000000.0, [{"projectNo": "P"}],
                                 "S1", "A01", hall)
        assert '"evalDetail":"%s"' % stored in text
    got = tally.as_dict()
    assert got["reasons"] == {"R2": 1, "R3": 1, "R8": 1}, got
    assert got["bad"] == 3 and got["非常不满意"] == 2 and got["不满意"] == 1  # no 差评 lost


def test_through_the_gateway_a_bad_code_is_neither_sent_nor_counted_and_the_rating_stays(hall):
    dev = connect(hall.device("EV-R"))
    pair(hall, dev, "S88", "A08")
    sent = [("P-commas", 1, ["R1,R2,R3"]), ("P-mixed", 2, ["R2", "R9", "R2", "R3\x00"]), ("P-ok", 1, ["R8"])]
    for case, score, reasons in sent:
        invite(hall, dev, "A08", [case])
        eid = dev.rate(score, reasons)
        dev.wait(lambda eid=eid: eid in dev.acked)  # stored and ACKed: never refused

    stored = rows(hall.db, "SELECT kind, score, reasons FROM events ORDER BY id")
    assert stored == [("rating", 1, ""), ("rating", 2, "R2"), ("rating", 1, "R8")]
    by_case = {r["projectNo"]: r for r in records(hall.db)}
    assert {c: (r["satisfaction"], r["evalDetail"]) for c, r in by_case.items()} == {
        "P-commas": (1, ""), "P-mixed": (2, "R2"), "P-ok": (1, "R8")}

    staff = monthly_rows(hall.db, "S88")
    assert staff["reasons"] == {"R2": 1, "R8": 1}, staff
    assert staff["bad"] == 3 and staff["rated"] == 3, staff
    # Counted where the admin looks: 1 + 3 codes dropped (the commit thread's stats, /api/status).
    assert hall.api("GET", "/api/status")[1]["ingest"]["reasons_dropped"] == 4
