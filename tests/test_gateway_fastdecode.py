"""gateway/ingest/fastdecode.py against the reference decoder (protocol.frame.decode
+ protocol.messages.parse): the same frame and message for every good packet,
the same refusal (error kind) for every bad one, the same tag verdicts.
Examples, hypothesis-made events (valid, with any field out of its rules,
with bytes changed, cut or added) and every single-byte change of a tagged
event."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.devices.keys import Key
from gateway.ingest import fastdecode as F
from protocol import cobs, frame, messages
from protocol.errors import ProtocolError
from protocol.examples import EXAMPLES, TEST_KEY

KEY = Key(TEST_KEY)
OTHER = Key(bytes(range(1, 33)))


def outcome(fn, packet):
    try:
        fr, msg = fn(packet)
    except ProtocolError as err:
        return ("refused", err.kind)
    verdicts = []
    for key in (KEY, OTHER):
        try:
            fr.verify(key)
            verdicts.append("good")
        except ProtocolError as err:
            verdicts.append(err.kind)
    return ("ok", fr.mtype, fr.session, fr.seq, fr.payload, fr.tag, fr.signed, msg, verdicts)


def same(packet):
    packet = bytes(packet)
    want = outcome(F.reference, packet)
    got = outcome(F.decode, packet)
    assert got == want, packet.hex()
    return want


def test_the_fast_path_is_on_for_this_protocol():
    assert F.ENABLED
    p = bytes(messages.encode(EXAMPLES[1], KEY))[:-1]
    assert F._event(p) is not None  # the fast path itself answered


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e["type"] + "-%d" % e["seq"])
def test_every_example_tagged_and_untagged(ex):
    for key in (None, KEY):
        assert same(messages.encode(ex, key)[:-1])[0] == "ok"


def test_every_single_byte_change_of_a_tagged_event():
    p = bytes(messages.encode(EXAMPLES[2], KEY)[:-1])
    raw = cobs.decode(p)
    for i in range(len(raw)):
        for v in (0, 1, 0x7F, 0xFF, raw[i] ^ 0x01):
            mangled = bytearray(raw)
            mangled[i] = v
            same(cobs.encode(bytes(mangled)))
            # ... and with the CRC made good again, so the later checks are reached
            body = bytes(mangled[:-4])
            same(cobs.encode(body + struct.pack("<I", __import__("binascii").crc32(body))))
        same(p[:i] + p[i + 1:])  # one byte lost on the line
    same(b"")


text = st.text(max_size=12)
u32 = st.integers(0, 0xFFFFFFFF)


def _payload(dev, boot, seq, k, score, reasons, inv, t, up):
    out = bytearray()
    d = dev.encode()
    out += bytes([len(d)]) + d + struct.pack("<II", boot, seq) + bytes([k, score, len(reasons)])
    for r in reasons:
        b = r.encode()
        out += bytes([len(b)]) + b
    b = inv.encode()
    out += bytes([len(b)]) + b + struct.pack("<II", t, up)
    return bytes(out)


def _frame(payload, mtype=messages.EVENT, vf=0x11, session=1, seq=2, key=KEY, extra=b""):
    body = struct.pack("<BBII", vf, mtype, session, seq) + payload + extra
    if vf & 1:
        body += key.tag(body)
    body += struct.pack("<I", __import__("binascii").crc32(body))
    return bytes(cobs.encode(body))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dev=st.one_of(st.text(alphabet="ABCXYZ019-_", min_size=1, max_size=34), st.text(max_size=5)),
       boot=u32, seq=u32, k=st.integers(0, 4), score=st.integers(0, 7),
       reasons=st.lists(text, max_size=3), inv=text, t=u32, up=u32,
       session=u32, fseq=u32, vf=st.sampled_from([0x10, 0x11, 0x11, 0x13, 0x21]),
       mtype=st.sampled_from([messages.EVENT, messages.EVENT, messages.EVENT, messages.HELLO, 0x55]),
       extra=st.sampled_from([b"", b"", b"\x00", b"x"]), cut=st.integers(0, 3))
def test_made_up_events_get_the_reference_verdict(dev, boot, seq, k, score, reasons, inv, t, up, session,
                                                   fseq, vf, mtype, extra, cut):
    p = _payload(dev, boot, seq, k, score, reasons, inv, t, up)
    if cut:
        p = p[:-cut]
    same(_frame(p, mtype=mtype, vf=vf, session=session, seq=fseq, extra=extra))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_packets_get_the_reference_verdict(data):
    same(data.replace(b"\x00", b"\x01"))
    same(cobs.encode(data))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["rating", "unrated", "uninvited"]), score=st.integers(0, 5),
       reasons=st.lists(st.text(max_size=8), max_size=3), inv=st.text(max_size=20),
       dev=st.text(alphabet="ABCDEFGHJK0123456789-_", min_size=1, max_size=32), n=st.integers(0, 0xFFFFFFFF))
def test_valid_events_decode_to_the_same_message(kind, score, reasons, inv, dev, n):
    msg = {"type": "event", "session": n, "seq": n ^ 0xFFFF, "device_id": dev, "boot": n, "event_seq": n // 3,
           "kind": kind, "score": score, "reasons": reasons, "invitation": inv, "time": n, "uptime_ms": n // 7}
    try:
        data = messages.encode(msg, KEY)
    except ProtocolError:
        return  # not a valid event: the made-up tests cover refusals
    r = same(data[:-1])
    assert F._event(bytes(data[:-1])) is not None  # answered by the fast path itself
    assert r[0] == "ok" and r[7] == msg and r[8] == ["good", "badtag"]
    assert frame.decode(bytes(data[:-1])).payload == r[4]


def _unstuff_reference(packet):
    try:
        return cobs.decode(packet)
    except ProtocolError:
        return None


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=700))
def test_unstuff_decodes_what_cobs_encoded(data):
    # runs of >= 254 bytes make 0xFF blocks: the block-by-block decoder's part
    packet = bytes(cobs.encode(data))
    assert F._unstuff(packet) == data == _unstuff_reference(packet)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(min_size=1, max_size=300).filter(lambda b: 0 not in b))
def test_unstuff_refuses_what_cobs_refuses(data):
    assert F._unstuff(data) == _unstuff_reference(data)


def test_unstuff_at_block_boundaries():
    for n in (0, 1, 252, 253, 254, 255, 508, 509):
        for data in (b"\x01" * n, b"\x01" * n + b"\x00", b"\x00" + b"\x07" * n + b"\x00\x00", b"\x00" * n):
            packet = bytes(cobs.encode(data))
            assert F._unstuff(packet) == data, n
            for cut in (1, 2, len(packet) // 2):
                if cut < len(packet):
                    assert F._unstuff(packet[:-cut]) == _unstuff_reference(packet[:-cut]), (n, cut)
