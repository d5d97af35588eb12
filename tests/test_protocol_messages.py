# Protocol message tests: every type round-trips, golden vectors, rules, junk.
# Runs unchanged under pytest (CPython) and under
#   micropython -X heapsize=128K tests/test_protocol_messages.py
# (the gateway's general codec, which a device never loads: see
# tests/test_under_micropython.py; it passed at 64K with ~8 KB to spare.)
# Plain asserts and test_* functions, in the style of micropython-lib's tests;
# tests/test_under_micropython.py runs this file under the real VM.

import binascii
import gc
import json  # noqa: E402

import mpcompat  # noqa: F401  (puts the repo root on sys.path)
from mpcompat import raises as _raises

from protocol import hmac256, jsonform, messages  # noqa: E402
from protocol.errors import AuthError, MessageError, ProtocolError  # noqa: E402
from protocol.examples import EXAMPLES, TEST_KEY  # noqa: E402

_VECTORS = mpcompat.ROOT + "/tests/vectors/protocol.json"


def _norm(msg):
    # Decoded event-id pairs are tuples; the examples write lists.
    return jsonform.to_json(msg)


def _hex(b):
    # hexlify, not a join over a list: one string, not one per byte (64K heap)
    return binascii.hexlify(b).decode()


def test_examples_cover_every_type():
    seen = {}
    for ex in EXAMPLES:
        seen[ex["type"]] = 1
    for code in messages.SCHEMA:
        assert messages.SCHEMA[code][0] in seen, messages.SCHEMA[code][0]


def test_round_trip_examples():
    key = hmac256.Key(TEST_KEY)
    for ex in EXAMPLES:
        for k in (None, key):
            wire = messages.encode(ex, k)
            assert wire[-1] == 0 and b"\x00" not in wire[:-1]
            assert _norm(messages.decode(wire[:-1], k)) == _norm(ex)


def test_golden_vectors():
    gc.collect()  # the file's text and objects want room in one piece
    with open(_VECTORS) as f:
        vectors = json.load(f)
    assert len(vectors) == 2 * len(EXAMPLES)
    for v in vectors:
        key = hmac256.Key(TEST_KEY) if v["key"] else None
        msg = jsonform.from_json(v["message"])
        assert _hex(messages.encode(msg, key)) == v["frame"], v["name"]
        packet = binascii.unhexlify(v["frame"][:-2])
        assert _norm(messages.decode(packet, key)) == v["message"], v["name"]


def test_tag_required_and_checked():
    key = hmac256.Key(TEST_KEY)
    other = hmac256.Key(b"\x01" * 32)
    ex = EXAMPLES[1]
    plain = messages.encode(ex)[:-1]
    tagged = messages.encode(ex, key)[:-1]
    assert _raises(AuthError, messages.decode, plain, key).kind == "untagged"
    assert _raises(AuthError, messages.decode, tagged, other).kind == "badtag"
    # Without a key a tagged frame still decodes (the tag is not checked).
    assert messages.decode(tagged)["event_seq"] == 41


def test_rules():
    ev = {}
    for k in EXAMPLES[2]:
        ev[k] = EXAMPLES[2][k]
    ev["reasons"] = []
    assert _raises(MessageError, messages.encode, ev).kind == "rule"  # 差评 without reason
    ev["reasons"] = ["R1"]
    ev["score"] = 6
    assert _raises(MessageError, messages.encode, ev).kind == "rule"
    ev["score"] = 2
    ev["kind"] = "bogus"
    _raises(MessageError, messages.encode, ev)
    ev["kind"] = "uninvited"
    _raises(MessageError, messages.encode, ev)  # uninvited with invitation/reasons
    bad_id = {}
    for k in EXAMPLES[0]:
        bad_id[k] = EXAMPLES[0][k]
    bad_id["device_id"] = "EV 1"
    _raises(MessageError, messages.encode, bad_id)
    bad_id["device_id"] = "EV-1"
    bad_id["boot"] = True  # bools are not integers on the wire
    _raises(MessageError, messages.encode, bad_id)
    _raises(MessageError, messages.encode, {"type": "nope"})


def test_arbitrary_bytes_only_protocol_errors():
    # A fixed pseudo-random walk (no `random` needed on either interpreter).
    x = 12345
    for n in range(400):
        data = bytearray(n % 90)
        for i in range(len(data)):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            data[i] = (x >> 16) & 0xFF
        try:
            messages.decode(bytes(data))
        except ProtocolError:
            pass
        for code in messages.SCHEMA:
            try:
                messages.decode_payload(code, 0, 0, bytes(data))
            except ProtocolError:
                pass


if __name__ == "__main__":
    mpcompat.main(globals())
