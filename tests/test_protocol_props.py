"""Hypothesis properties of the wire protocol (CPython side).

The same codec runs on the device; tests/test_protocol_core.py and
test_protocol_messages.py run there too. Here we search the input space."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import frame, hmac256, jsonform, messages, reader
from protocol.errors import AuthError, ProtocolError

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(max_size=40)  # at most 160 UTF-8 bytes: always fits a field
device_id = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefgh0123456789-_", min_size=1, max_size=32)
keys = st.binary(min_size=32, max_size=32)

_BY_KIND = {
    "B": u8, "H": u16, "I": u32, "h": st.integers(-32768, 32767), "s": text,
    "y": st.binary(max_size=300), "S": st.lists(text, max_size=8),
    "E": st.lists(st.tuples(u32, u32), min_size=1, max_size=40),
    "k": st.sampled_from(["rating", "unrated", "uninvited"]),
}


@st.composite
def _event(draw, base):
    kind = base["kind"]
    if kind == "rating":
        base["score"] = draw(st.integers(1, 5))
        base["reasons"] = draw(st.lists(text, min_size=1, max_size=8)) if base["score"] <= 2 else []
        base["invitation"] = draw(text.filter(bool))
    elif kind == "unrated":
        base["score"] = 0
        base["reasons"] = []
        base["invitation"] = draw(text.filter(bool))
    else:
        base["score"] = draw(st.integers(1, 5))
        base["reasons"] = []
        base["invitation"] = ""
    return base


@st.composite
def message(draw, code=None):
    if code is None:
        code = draw(st.sampled_from(sorted(messages.SCHEMA)))
    msg = {"type": messages.SCHEMA[code][0], "session": draw(u32), "seq": draw(u32)}
    for name, kind in messages.fields(code):
        msg[name] = draw(device_id if name == "device_id" else _BY_KIND[kind])
    t = msg["type"]
    if t == "event":
        msg = draw(_event(msg))
    elif t == "invite":
        msg["invitation"] = draw(text.filter(bool))
        msg["cases"] = draw(st.lists(text, min_size=1, max_size=20))
        msg["timeout_s"] = draw(st.integers(1, 0xFFFF))
    elif t == "bind":
        msg["staff_id"] = draw(text.filter(bool))
    elif t == "bitmap":
        msg["width"] = draw(st.integers(1, 256))
        msg["height"] = draw(st.integers(1, 64))
        size = (msg["width"] + 7) // 8 * msg["height"]
        msg["offset"] = draw(st.integers(0, size))
        msg["data"] = draw(st.binary(max_size=min(size - msg["offset"], 1500)))
    elif t == "config":
        msg["reasons"] = draw(st.lists(text, max_size=messages.MAX_REASONS))
    return msg


def _same(a, b):
    assert jsonform.to_json(a) == jsonform.to_json(b)


@given(message(), st.none() | keys)
def test_round_trip_every_type(msg, raw_key):
    key = hmac256.Key(raw_key) if raw_key else None
    wire = messages.encode(msg, key)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    _same(messages.decode(wire[:-1], key), msg)


@settings(max_examples=50)
@given(st.sampled_from(sorted(messages.SCHEMA)).flatmap(lambda c: message(c)))
def test_each_type_round_trips(msg):
    _same(messages.decode(messages.encode(msg)[:-1]), msg)


@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_protocol_error(data):
    try:
        messages.decode(data.replace(b"\x00", b"\x01"))
    except ProtocolError:
        pass
    for code in messages.SCHEMA:
        try:
            messages.decode_payload(code, 0, 0, data)
        except ProtocolError:
            pass
    r = reader.Reader(key_for=lambda fr: hmac256.Key(bytes(32)))
    r.feed(data)  # never raises; everything counted


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(message(), st.none() | keys, st.data())
def test_every_single_bit_flip_is_detected(msg, raw_key, data):
    key = hmac256.Key(raw_key) if raw_key else None
    wire = messages.encode(msg, key)
    # All flips for small frames, a sample of positions for large ones.
    positions = range(len(wire)) if len(wire) <= 80 else data.draw(
        st.lists(st.integers(0, len(wire) - 1), min_size=40, max_size=40))
    for i in positions:
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            r = reader.Reader(key_for=(lambda fr: key) if key else None)
            assert r.feed(bytes(bad) + b"\x00") == [], (i, bit)


@given(message(), keys, keys)
def test_wrong_or_missing_tag_rejected(msg, k1, k2):
    good = hmac256.Key(k1)
    plain = messages.encode(msg)[:-1]
    try:
        messages.decode(plain, good)
        raise AssertionError("untagged frame accepted with a key")
    except AuthError as err:
        assert err.kind == "untagged"
    if k1 != k2:
        tagged = messages.encode(msg, hmac256.Key(k2))[:-1]
        try:
            messages.decode(tagged, good)
            raise AssertionError("wrongly keyed frame accepted")
        except AuthError as err:
            assert err.kind == "badtag"


@given(st.lists(message(), min_size=1, max_size=12), st.data())
def test_any_split_reassembles(msgs, data):
    stream = b"".join(messages.encode(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    r = reader.Reader()
    out = []
    prev = 0
    for c in cuts + [len(stream)]:
        out.extend(r.feed(stream[prev:c]))
        prev = c
    assert len(out) == len(msgs) and r.bad == 0
    for a, b in zip(out, msgs, strict=True):
        _same(a, b)


@given(message(), st.binary(min_size=1, max_size=50))
def test_garbage_before_a_delimiter_costs_only_itself(msg, junk):
    stream = junk.replace(b"\x00", b"") + b"\x00" + messages.encode(msg)
    r = reader.Reader()
    got = r.feed(stream)
    assert len(got) == 1
    _same(got[0], msg)


def test_replay_window():
    r = frame.Replay()
    fr = frame.decode(messages.encode({"type": "cancel", "session": 2, "seq": 5, "invitation": "x"})[:-1])
    r.accept(fr)
    older = frame.decode(messages.encode({"type": "cancel", "session": 1, "seq": 99, "invitation": "x"})[:-1])
    newer = frame.decode(messages.encode({"type": "cancel", "session": 3, "seq": 0, "invitation": "x"})[:-1])
    for bad in (fr, older):
        try:
            r.accept(bad)
            raise AssertionError("replay accepted")
        except AuthError:
            pass
    r.accept(newer)
