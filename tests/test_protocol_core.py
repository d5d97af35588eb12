# Protocol framing tests of the gateway's general codec: COBS, frames, replay,
# the incremental reader. Runs unchanged under pytest (CPython) and under
#   micropython -X heapsize=128K tests/test_protocol_core.py
# (128K: a device never loads this codec; the device's own codec and HMAC are
# tested in its 64K heap by tests/test_protocol_device.py. At 64K this file
# passed or ran out of a 2 KB block depending on the checkout's path, CI
# 2026-11-24: fragmentation, not a fault of the code under test.)
# Plain asserts and test_* functions, in the style of micropython-lib's tests;
# tests/test_under_micropython.py runs this file under the real VM.

import mpcompat  # noqa: F401  (puts the repo root on sys.path)
from mpcompat import raises as _raises

from protocol import cobs, frame, hmac256, messages, reader  # noqa: E402
from protocol.errors import AuthError, FrameError  # noqa: E402
from protocol.examples import EXAMPLES, TEST_KEY  # noqa: E402


def test_cobs_known():
    # Vectors from the COBS paper's examples and the 254-byte block edges.
    assert cobs.encode(b"") == b"\x01"
    assert cobs.encode(b"\x00") == b"\x01\x01"
    assert cobs.encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs.encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs.encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    run = bytearray(254)  # (a 254-item list would not fit a 64K heap)
    for i in range(254):
        run[i] = 1 + i % 255
    run = bytes(run)
    assert cobs.encode(run) == b"\xff" + run + b"\x01"
    for data in (b"", b"\x00", run, run + b"\x00", b"\x00" + run + run, bytes(300)):
        enc = cobs.encode(data)
        assert b"\x00" not in enc
        assert cobs.decode(enc) == data


def test_cobs_rejects():
    _raises(FrameError, cobs.decode, b"\x05\x11")
    _raises(FrameError, cobs.decode, b"\x02\x00")


def test_replay_refused():
    r = frame.Replay()
    a = frame.decode(messages.encode(EXAMPLES[0])[:-1])  # session 7 seq 1
    b = frame.decode(messages.encode(EXAMPLES[1])[:-1])  # session 7 seq 2
    r.accept(a)
    r.accept(b)
    assert _raises(AuthError, r.accept, a).kind == "replay"
    assert _raises(AuthError, r.accept, b).kind == "replay"


def test_every_bit_flip_detected():
    key = hmac256.Key(TEST_KEY)
    for ex in (EXAMPLES[2], EXAMPLES[6]):
        for k in (None, key):
            wire = messages.encode(ex, k)
            for i in range(len(wire)):
                for bit in range(8):
                    bad = bytearray(wire)
                    bad[i] ^= 1 << bit
                    r = reader.Reader()
                    got = r.feed(bytes(bad))
                    assert got == [], (ex["type"], i, bit)


def test_reader_chunks_and_garbage():
    key = hmac256.Key(TEST_KEY)
    # Line noise, then the 0x00 every sender puts first to close whatever
    # partial frame the receiver holds (frames glued to garbage are lost).
    stream = bytearray(b"\x13\x37garbage\x00")
    for ex in EXAMPLES:
        stream.extend(messages.encode(ex, key))
    stream.extend(b"\x00\x00\x00")  # idle line
    stream.extend(b"\x05\x06\x07\x00")  # short garbage frame
    stream.extend(messages.encode(EXAMPLES[0], key))
    r = reader.Reader(key_for=lambda fr: key)
    for size in (1, 2, 7, 64, len(stream)):
        r.errors = {}
        out = []
        for i in range(0, len(stream), size):
            out.extend(r.feed(bytes(stream[i : i + size])))
        assert [m["type"] for m in out] == [e["type"] for e in EXAMPLES] + ["hello"]
        assert r.bad == 2, r.errors


def test_reader_bounded():
    r = reader.Reader(max_encoded=64)
    assert r.feed(b"\x01" * 500) == []
    assert r.feed(b"\x00" + messages.encode(EXAMPLES[8])) != []
    assert r.errors == {"long": 1}


if __name__ == "__main__":
    mpcompat.main(globals())
