# protocol.rx (frames into the device, decoded in one preallocated buffer)
# gives exactly what protocol.messages.decode gives for every message a
# device receives, and refuses what it refuses, with the same error kind.
# Runs unchanged under pytest (CPython) and under
#   micropython -X heapsize=128K tests/test_protocol_rx.py
# (128K: it compiles from source the general codec it compares against,
# which a device never loads; the device's budget is the firmware's tests.)
# (tests/test_under_micropython.py does that from pytest).

import sys

import mpcompat  # noqa: F401  (puts the repo root on sys.path)
from mprandom import rand_bits as _rand  # noqa: E402
from mprandom import rand_text as _text  # noqa: E402

from protocol import hmac256, messages, reader, rx  # noqa: E402
from protocol.errors import AuthError, ProtocolError  # noqa: E402
from protocol.examples import EXAMPLES, TEST_KEY  # noqa: E402

_MP = sys.implementation.name == "micropython"
_DOWN = ("ack", "invite", "cancel", "time", "bind", "unbind", "bitmap", "config", "error")


def _plain(msg):
    # rx gives `y` fields as memoryviews into its buffer: compare the bytes.
    out = {}
    for k in msg:
        v = msg[k]
        out[k] = bytes(v) if isinstance(v, memoryview) else v
    if "ids" in out:
        out["ids"] = [tuple(i) for i in out["ids"]]
    return out


def _rx(packet, key):
    rx.reset()
    rx.buf[: len(packet)] = packet
    return rx.decode(len(packet), key)


def _outcome(fn, *args):
    try:
        return "ok", _plain(fn(*args))
    except ProtocolError as err:
        return "error", err.kind


def _reference(packet, key):
    # What the gateway's codec says, with the device's extra rule: messages
    # that travel up are refused as "type".
    kind, got = _outcome(messages.decode, packet, key)
    if kind == "ok" and messages.TYPES[got["type"]] < 0x10:
        return "error", "type"
    return kind, got


def _same(line_bytes, key):
    packet = bytes(line_bytes[:-1])
    if len(packet) > rx.CAP:
        return None
    want = _reference(packet, key)
    got = _outcome(_rx, packet, key)
    assert got == want, (packet, want, got)
    return got


def test_examples_decode_alike():
    key = hmac256.Key(TEST_KEY)
    n = 0
    for ex in EXAMPLES:
        if ex["type"] in _DOWN:
            for k in (None, key):
                kind, msg = _same(messages.encode(ex, k), k)
                assert kind == "ok" and msg["type"] == ex["type"], (ex, msg)
                n += 1
    assert n == 18, n


def _random_msg(kind):
    m = {"type": kind, "session": _rand(32), "seq": _rand(32)}
    for name, k in messages.iter_fields(messages.TYPES[kind]):
        if k == "s":
            v = _text(40) if _rand(2) else "EV-1"
        elif k == "S":
            v = [_text(12) for _ in range(_rand(2))]
        elif k == "E":
            v = [[_rand(32), _rand(32)] for _ in range(_rand(2))]
        elif k == "y":
            v = bytes(_rand(8) for _ in range((32, 0, 7, 600)[_rand(2)]))
        elif k == "h":
            v = _rand(16) - 0x8000
        else:
            v = _rand({"B": 8, "H": 16, "I": 32}[k]) >> _rand(3)
        m[name] = v
    return m


def test_random_messages_and_damage_alike():
    key = hmac256.Key(TEST_KEY)
    good = damaged = 0
    for i in range(150 if _MP else 1500):
        msg = _random_msg(_DOWN[i % len(_DOWN)])
        k = key if i & 1 else None
        try:
            line = bytearray(messages.encode(msg, k))
        except ProtocolError:
            continue  # a message the codec itself refuses to send
        if _same(line, k) is not None:
            good += 1
        # The same frame hurt: a byte changed (never to the delimiter), one
        # dropped, or a tail cut off; under COBS, CRC, tag and fields both
        # sides must agree on the verdict and its kind.
        pos = _rand(16) % (len(line) - 1)
        how = i % 3
        if how == 0:
            line[pos] = (line[pos] ^ (1 + _rand(7))) or 1
        elif how == 1:
            line = line[:pos] + line[pos + 1 :]
        else:
            line = line[: pos + 1] + b"\x00"
        if len(line) > 1 and _same(line, k) is not None:
            damaged += 1
    assert good > 500 // (10 if _MP else 1) and damaged > 50 // (10 if _MP else 1), (good, damaged)


def test_unstuffed_blocks_of_every_length():
    # COBS blocks around 254 bytes and runs of zeros, decoded over themselves.
    for n in (0, 1, 200, 253, 254, 255, 509, 600):
        for fill in (b"\x00", b"\x07", b"\x00\x09"):
            data = (fill * n)[:n]
            msg = {"type": "bitmap", "session": 1, "seq": 1, "slot": 1, "width": 128,
                   "height": 64, "offset": 0, "data": data}
            kind, got = _same(messages.encode(msg), None)
            assert kind == "ok" and got["data"] == data, (n, fill)


def test_keyed_device_refuses_untagged_wrong_tag_and_replay():
    key = hmac256.Key(TEST_KEY)
    other = hmac256.Key(b"\x01" * 32)
    ack = {"type": "ack", "session": 9, "seq": 5, "device_id": "EV-1", "ids": [[1, 2]]}
    assert rx.reset() is None
    err = mpcompat.raises(AuthError, _rx, messages.encode(ack)[:-1], key)
    assert err.kind == "untagged"
    err = mpcompat.raises(AuthError, _rx, messages.encode(ack, other)[:-1], key)
    assert err.kind == "badtag"
    # Accepted once; the same (session, seq) again, or an older one, is a
    # replay; a later seq, or a new session, passes.
    pkt = messages.encode(ack, key)[:-1]
    rx.reset()
    for p in (pkt,):
        rx.buf[: len(p)] = p
        assert rx.decode(len(p), key)["ids"] == [(1, 2)]
    for s, q, ok in ((9, 5, False), (9, 4, False), (8, 99, False), (9, 6, True), (10, 1, True)):
        m = dict(ack)
        m["session"] = s
        m["seq"] = q
        p = messages.encode(m, key)[:-1]
        rx.buf[: len(p)] = p
        if ok:
            assert rx.decode(len(p), key)["seq"] == q
        else:
            assert mpcompat.raises(AuthError, rx.decode, len(p), key).kind == "replay"
            assert rx.last_seq == q  # what the device's error reply names


def test_feed_splits_like_the_reader():
    # Frames with garbage between them, fed in chunks of every size: the
    # packets handed over are the general Reader's, in order.
    stream = bytearray(b"\x00\x00junk")
    for ex in EXAMPLES:
        stream += messages.encode(ex)
        stream += b"\xff\x01"
    stream += b"\x00" + b"\x05" * (rx.CAP + 10) + b"\x00"  # overlong: dropped
    stream += messages.encode(EXAMPLES[-1])
    want = reader.Reader(max_encoded=rx.CAP).packets(bytes(stream))
    for size in (1, 2, 7, 64, 128, 5000):
        got = []
        before = rx.overlong
        for i in range(0, len(stream), size):
            chunk = bytearray(stream[i : i + size])
            rx.feed(chunk, len(chunk), lambda k, got=got: got.append(bytes(rx.buf[:k])))
        assert got == want, size
        assert rx.overlong == before + 1
    # Only the first n bytes of the chunk count (a device reads into one buffer).
    got = []
    chunk = bytearray(messages.encode(EXAMPLES[0]) + b"\x11\x22")
    rx.feed(chunk, len(chunk) - 2, lambda k: got.append(k))
    assert len(got) == 1


def test_few_allocations():
    # The point of rx: a 512-byte bitmap part costs the heap small pieces
    # only (its dict, names, a memoryview, the HMAC's digests: ~1.4 KB in
    # all), where the general path copies the frame four times (~5.7 KB).
    if not _MP:
        return
    import gc

    key = hmac256.Key(TEST_KEY)
    msg = {"type": "bitmap", "session": 3, "seq": 1, "slot": 0, "width": 128, "height": 64,
           "offset": 0, "data": bytes(range(256)) * 2}
    pkt = messages.encode(msg, key)[:-1]
    _rx(pkt, key)
    rx.reset()
    rx.buf[: len(pkt)] = pkt
    gc.collect()
    before = gc.mem_alloc()
    got = rx.decode(len(pkt), key)
    used = gc.mem_alloc() - before
    assert bytes(got["data"]) == msg["data"]
    gc.collect()
    before = gc.mem_alloc()
    messages.decode(pkt, key)
    general = gc.mem_alloc() - before
    assert used < 1600 and used * 3 < general, (used, general)


if __name__ == "__main__":
    mpcompat.main(globals())
