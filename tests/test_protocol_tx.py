# protocol.tx (frames packed in one preallocated buffer) puts on the line
# exactly the bytes of protocol.messages.encode, and refuses what it refuses.
# Runs unchanged under pytest (CPython) and under
#   micropython -X heapsize=128K tests/test_protocol_tx.py
# (tests/test_under_micropython.py does that from pytest).

import sys

import mpcompat  # noqa: F401  (puts the repo root on sys.path)
from mprandom import rand_bits as _rand  # noqa: E402
from mprandom import rand_text as _text  # noqa: E402

from protocol import cobs, hmac256, messages, tx  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402
from protocol.examples import EXAMPLES, TEST_KEY  # noqa: E402

_MP = sys.implementation.name == "micropython"
_UP = ("hello", "event", "health", "done", "error")


def _values(msg):
    code = messages.TYPES[msg["type"]]
    out = []
    for name, _ in messages.iter_fields(code):
        out.append(msg[name])
    return code, tuple(out)


def _tx(msg, key):
    code, values = _values(msg)
    return bytes(tx.frame(code, msg["session"], msg["seq"], values, key))


def _same(msg, key):
    want = None
    try:
        want = bytes(messages.encode(msg, key))
    except ProtocolError:
        pass
    got = None
    try:
        got = _tx(msg, key)
    except ProtocolError as err:
        if err.kind == "long":
            # tx's buffer holds any frame a device sends (an event is at
            # most a journal slot); longer ones are refused, not truncated.
            # (Or both refuse: tx stops at the first field past its end.)
            # CAP counts the frame before COBS: header, payload, tag, CRC.
            assert want is None or len(cobs.decode(want[:-1])) > tx.CAP, (msg, want)
            return None
    assert got == want, (msg, want, got)
    return want


def test_examples_byte_for_byte():
    key = hmac256.Key(TEST_KEY)
    n = 0
    for ex in EXAMPLES:
        if ex["type"] in _UP:
            for k in (None, key):
                assert _same(ex, k) is not None
                n += 1
    assert n == 16


# Random field values (mprandom.rand_bits, rand_text).


def _id():
    n = 1 + _rand(5)
    out = []
    for _ in range(n):
        out.append("ABZ09-_x"[_rand(3)])
    return "".join(out)


def _int(top):
    # Mostly in range, sometimes edge values, now and then out of range.
    r = _rand(4)
    if r == 0:
        return top
    if r == 1:
        return 0
    if r == 2:
        return top + 1
    if r == 3:
        return -1
    return _rand(32) % (top + 1)


def _random_msg(kind):
    m = {"type": kind, "session": _int(0xFFFFFFFF), "seq": _int(0xFFFFFFFF)}
    code = messages.TYPES[kind]
    for name, k in messages.iter_fields(code):
        if name == "device_id":
            v = _id() if _rand(4) else _text(40)
        elif name == "kind":
            v = ("rating", "unrated", "uninvited", "rating", "bogus")[_rand(8) % 5]
        elif name == "score":
            v = _rand(3)
        elif k == "s":
            v = _text(300 if _rand(3) == 0 else 20)
        elif k == "S":
            v = []
            for _ in range(_rand(2)):
                v.append(_text(12))
        elif k == "B":
            v = _int(0xFF)
        elif k == "H":
            v = _int(0xFFFF)
        elif k == "h":
            v = _int(0xFFFF) - 0x8000
        else:
            v = _int(0xFFFFFFFF)
        m[name] = v
    if _rand(5) == 0:
        m["seq"] = True  # bool is no integer on either side
    return m


def test_random_values_byte_for_byte():
    key = hmac256.Key(TEST_KEY)
    good = 0
    for i in range(300 if _MP else 2000):
        msg = _random_msg(_UP[i % len(_UP)])
        if _same(msg, key if i & 1 else None) is not None:
            good += 1
    assert good > 50, good  # both sides accepted a fair share


def test_long_runs_and_zeros():
    # COBS blocks of exactly 254 non-zero bytes, runs of zeros, and the
    # longest texts, around the block boundaries.
    key = hmac256.Key(TEST_KEY)
    for n in (0, 1, 200, 222, 223, 224, 225, 240, 253, 254, 255):
        for fill in ("a", "\x00", "中"):
            s = (fill * n).encode()[:255].decode() if fill == "中" else fill * n
            msg = {"type": "error", "session": 0x01010101, "seq": 0xFFFFFFFF, "code": 0xFFFF,
                   "ref_seq": 0x7F7F7F7F, "detail": s}
            for k in (None, key):
                assert _same(msg, k) is not None or len(s.encode()) > 200
            msg = {"type": "hello", "session": 1, "seq": 2, "device_id": "D" * 32, "fw": s,
                   "board": s, "boot": 0, "journal_depth": 0, "uptime_ms": 0, "staff_id": "",
                   "paired": 0}
            _same(msg, key)


def test_refusals_match():
    base = {"type": "event", "session": 7, "seq": 2, "device_id": "EV-0001", "boot": 7,
            "event_seq": 41, "kind": "rating", "score": 1, "reasons": [], "invitation": "INV-9",
            "time": 1, "uptime_ms": 2}
    assert _same(base, None) is None  # a 差评 without a reason
    for name, v in (("device_id", "bad id"), ("device_id", ""), ("score", 9), ("score", True),
                    ("kind", "x"), ("reasons", "R1"), ("invitation", 5), ("time", -1)):
        m = dict(base)
        m["reasons"] = ["R1"]
        m[name] = v
        assert _same(m, None) is None, (name, v)


def test_few_allocations():
    # The point of tx: a health frame costs the heap only small pieces (the
    # texts' bytes, the HMAC's digests), none near a frame's size.
    if not _MP:
        return
    import gc

    key = hmac256.Key(TEST_KEY)
    code, values = _values(EXAMPLES[5])
    tx.frame(code, 7, 6, values, key)
    gc.collect()
    before = gc.mem_alloc()
    tx.frame(code, 7, 6, values, key)
    used = gc.mem_alloc() - before
    assert used < 1024, used


if __name__ == "__main__":
    mpcompat.main(globals())
