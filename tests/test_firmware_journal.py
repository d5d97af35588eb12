"""The flash journal on a real file: CRC per record, torn tails discarded,
removal only on ACK, the full policy, and the boot-number memory.

Runs under pytest and under MicroPython (driven by test_under_micropython.py)."""

import os

import mpcompat  # noqa: F401  (puts the repo root on sys.path)

from firmware.journal import RATING, ROOM, SLOT, UNINVITED, UNRATED, size_of
from firmware.recover import open_journal as Journal


def _tmpdir():
    import binascii

    path = "/tmp/hcp-fwj-" + binascii.hexlify(os.urandom(6)).decode()
    os.mkdir(path)
    return path


def _rm(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def _rating(j, boot, seq, score=5, reasons=(), inv="INV"):
    return j.append(boot, seq, RATING, score, list(reasons), inv, 1795000000 + seq, 1000 * seq)


def test_append_read_reopen_and_order():
    d = _tmpdir()
    try:
        p = d + "/journal"
        j = Journal(p, 8)
        assert os.stat(p)[6] == 8 * SLOT and len(j.live) == 0 and (j.slots - len(j.live)) == 8
        _rating(j, 3, 1)
        _rating(j, 3, 2, 1, ["R1", "R7"], "批次-9")
        j.append(3, 3, UNRATED, 0, [], "INV-3", 0, 42)
        j.f.close()
        j = Journal(p, 8)
        assert len(j.live) == 3 and j.max_boot == 3 and j.corrupt == 0
        got = [j.read(s) for s in j.live]
        assert got[0] == (3, 1, RATING, 5, 1795000001, 1000, "INV", [])
        assert got[1] == (3, 2, RATING, 1, 1795000002, 2000, "批次-9", ["R1", "R7"])
        assert got[2] == (3, 3, UNRATED, 0, 0, 42, "INV-3", [])
        j.f.close()
    finally:
        _rm(d)


def test_ack_removes_only_named_records_and_survives_reopen():
    d = _tmpdir()
    try:
        p = d + "/journal"
        j = Journal(p, 8)
        for q in range(1, 6):
            _rating(j, 2, q)
        assert j.ack(2, 2) >= 0 and j.ack(2, 4) >= 0
        assert j.ack(2, 4) == -1 and j.ack(9, 1) == -1  # unknown ids are ignored
        j.f.flush()
        j.f.close()
        j = Journal(p, 8)
        assert [j.read(s)[1] for s in j.live] == [1, 3, 5]
        # Acknowledged records still remember the boot number.
        for q in (1, 3, 5):
            j.ack(2, q)
        j.f.close()
        j = Journal(p, 8)
        assert len(j.live) == 0 and j.max_boot == 2
        j.f.close()
    finally:
        _rm(d)


def test_torn_record_discarded_at_boot_and_counted_once():
    d = _tmpdir()
    try:
        p = d + "/journal"
        j = Journal(p, 8)
        _rating(j, 1, 1)
        s2 = _rating(j, 1, 2, 2, ["R2"])
        j.f.close()
        # Tear the second record: flip one byte of its body, as a write
        # interrupted by a power cut would leave it.
        f = open(p, "r+b")
        f.seek(s2 * SLOT + 12)
        b = f.read(1)
        f.seek(s2 * SLOT + 12)
        f.write(bytes([b[0] ^ 0xFF]))
        f.close()
        j = Journal(p, 8)
        assert j.corrupt == 1 and len(j.live) == 1 and j.read(j.live[0])[1] == 1
        j.f.close()
        j = Journal(p, 8)
        assert j.corrupt == 0 and len(j.live) == 1  # cleared on flash: counted once
        j.f.close()
        # A file cut off in the middle of a slot (torn extension) is fine too.
        f = open(p, "r+b")
        data = f.read()
        f.close()
        f = open(p, "wb")
        f.write(data[: SLOT + 10])
        f.close()
        j = Journal(p, 8)
        assert len(j.live) == 1 and os.stat(p)[6] == 8 * SLOT
        j.f.close()
    finally:
        _rm(d)


def test_full_policy_never_overwrites_unacked():
    d = _tmpdir()
    try:
        p = d + "/journal"
        j = Journal(p, 4, reserve=1)
        for q in range(1, 5):
            assert _rating(j, 1, q) >= 0
        assert (j.slots - len(j.live)) == 0 and not j.has_room(RATING)
        assert _rating(j, 1, 5) == -1
        # The ACK frees a slot; the next record overwrites that acknowledged
        # slot and nothing live.
        s = j.ack(1, 3)
        j.f.flush()
        assert _rating(j, 1, 6) == s
        assert sorted(j.read(x)[1] for x in j.live) == [1, 2, 4, 6]
        j.f.close()
    finally:
        _rm(d)


def test_uninvited_presses_keep_out_of_the_reserve():
    d = _tmpdir()
    try:
        j = Journal(d + "/journal", 4, reserve=2)
        assert j.append(1, 1, UNINVITED, 3, [], "", 0, 0) >= 0
        assert j.append(1, 2, UNINVITED, 3, [], "", 0, 0) >= 0
        assert j.append(1, 3, UNINVITED, 3, [], "", 0, 0) == -1  # 2 free = the reserve
        assert _rating(j, 1, 4) >= 0 and _rating(j, 1, 5) >= 0
        assert (j.slots - len(j.live)) == 0
        j.f.close()
    finally:
        _rm(d)


def test_oldest_acked_slot_goes_first_and_order_is_by_event_id():
    d = _tmpdir()
    try:
        p = d + "/journal"
        j = Journal(p, 4, reserve=0)
        for q in range(1, 5):
            _rating(j, 1, q)  # slots 0..3
        j.ack(1, 1)
        _rating(j, 2, 1)  # reuses slot 0
        j.ack(1, 3)
        _rating(j, 2, 2)  # slot 1 is live: skips to slot 2
        j.f.flush()
        j.f.close()
        j = Journal(p, 4)
        assert [j.read(s)[:2] for s in j.live] == [(1, 2), (1, 4), (2, 1), (2, 2)]
        assert j.max_boot == 2
        j.f.close()
    finally:
        _rm(d)


def test_growing_the_setting_keeps_records_shrinking_does_not_cut():
    d = _tmpdir()
    try:
        p = d + "/journal"
        j = Journal(p, 4)
        _rating(j, 1, 1)
        j.f.close()
        j = Journal(p, 2)
        assert j.slots == 4 and len(j.live) == 1
        j.f.close()
        j = Journal(p, 16)
        assert j.slots == 16 and len(j.live) == 1 and os.stat(p)[6] == 16 * SLOT
        j.f.close()
    finally:
        _rm(d)


def test_record_size_limit():
    d = _tmpdir()
    try:
        j = Journal(d + "/journal", 2)
        long_inv = "x" * 250
        assert size_of(long_inv, []) > ROOM
        mpcompat.raises(ValueError, _rating, j, 1, 1, 5, [], long_inv)
        assert size_of("I" * 64, ["R%d" % i for i in range(32)]) <= ROOM
        assert _rating(j, 1, 2, 1, ["R%d" % i for i in range(32)], "I" * 64) >= 0
        j.f.close()
    finally:
        _rm(d)


if __name__ == "__main__":
    mpcompat.main(globals())
