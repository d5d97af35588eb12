"""gateway/devices/fastencode.py against the reference encoder (protocol.messages.encode):
the same bytes for every ack the gateway can send (random ids, keys, sessions,
seqs, device ids; COBS block boundaries), the same refusal for what the
reference refuses; and the COBS part against protocol.cobs on any data."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.devices import fastencode as F
from gateway.devices.keys import Key
from protocol import cobs, messages
from protocol.errors import ProtocolError
from protocol.examples import TEST_KEY

KEYS = [None, Key(TEST_KEY), Key(bytes(range(1, 33))), Key(b"k" * 70)]


def reference(session, seq, device_id, ids, key):
    try:
        return bytes(messages.encode({"type": "ack", "session": session, "seq": seq,
                                      "device_id": device_id, "ids": ids}, key))
    except ProtocolError as err:
        return ("refused", err.kind)


def fast(session, seq, device_id, ids, key):
    try:
        return F.ack(session, seq, device_id, ids, key)
    except ProtocolError as err:
        return ("refused", err.kind)


def same(session, seq, device_id, ids, key):
    want = reference(session, seq, device_id, ids, key)
    got = fast(session, seq, device_id, ids, key)
    assert got == want
    if isinstance(got, bytes):
        assert messages.decode(got[:-1], key if key is not None else None)["ids"] == [tuple(i) for i in ids]
    return got


def test_the_fast_path_is_on_for_this_protocol():
    assert F.ENABLED
    assert F._payload("LD-0001", [(1, 2)]) is not None


u32 = st.integers(0, 0xFFFFFFFF)
small = st.integers(0, 300)
ids_st = st.lists(st.tuples(st.one_of(u32, small), st.one_of(u32, small)), min_size=1, max_size=200)
device_ids = st.text(alphabet="ABCXYZabz0189-_", min_size=1, max_size=32)


@settings(max_examples=400, deadline=None)
@given(u32, u32, device_ids, ids_st, st.sampled_from(KEYS))
def test_random_acks_are_byte_for_byte_the_reference(session, seq, device_id, ids, key):
    assert isinstance(same(session, seq, device_id, ids, key), bytes)


def test_acks_as_the_commit_thread_sends_them():
    for n in (1, 2, 7, 8, 31, 32, 33, 100, 199, 200):
        for key in KEYS:
            for boot in (0, 1, 255, 256, 0x01000000, 0xFFFFFFFF):
                ids = [(boot, s) for s in range(1, n + 1)]
                same(7, 123456, "LD-0042", ids, key)
                same(0, 0, "A", [list(i) for i in ids], key)  # lists, as JSON gives them


@pytest.mark.parametrize("bad", [
    ("LD", []),                        # an ack names at least one event
    ("", [(1, 2)]),                    # device id rule
    ("x" * 33, [(1, 2)]),
    ("LD 1", [(1, 2)]),
    ("设备", [(1, 2)]),
    ("LD", [(1, 2, 3)]),               # not pairs
    ("LD", [(1,)]),
    ("LD", ["ab"]),
    ("LD", [(-1, 2)]),                 # not u32
    ("LD", [(1, 1 << 32)]),
    ("LD", [(True, 2)]),               # bools are not integers
    ("LD", [(1.0, 2)]),
    ("LD", [(1, 2)] * 260),            # payload over MAX_PAYLOAD
])
def test_what_the_reference_refuses_is_refused_alike(bad):
    device_id, ids = bad
    for key in KEYS[:2]:
        same(1, 2, device_id, ids, key)


def test_header_out_of_range_goes_to_the_reference():
    for session, seq in ((-1, 0), (0, -1), (1 << 32, 0), (0, 1 << 32), (True, 1), (1, 2.0)):
        assert reference(session, seq, "LD", [(1, 2)], None) == fast(session, seq, "LD", [(1, 2)], None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1200))
def test_cobs_matches_the_reference(data):
    assert F._cobs(data) == bytes(cobs.encode(data, True))


def test_cobs_at_every_block_boundary():
    for n in (0, 1, 252, 253, 254, 255, 256, 507, 508, 509, 762):
        for fill in (b"\x01", b"\xff"):
            for data in (fill * n, fill * n + b"\x00", b"\x00" + fill * n, fill * n + b"\x00" + fill * n,
                         b"\x00" * n):
                assert F._cobs(data) == bytes(cobs.encode(data, True)), (n, fill)
