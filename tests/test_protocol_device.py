# The device's own codec (protocol.tx out, protocol.rx in, protocol.hmac256)
# on its own, in the device's 64 KiB heap: frames it packs come back through
# its reader unchanged, every single-bit flip of a frame is refused by the
# CRC or the tag, a replayed frame is refused, HMAC-SHA256 gives RFC 4231's
# answers. Nothing here loads the gateway's general codec (messages, frame,
# cobs, reader), which a device never loads either; tests/test_protocol_rx.py
# and _tx.py prove the device codec equal to it.
# Runs unchanged under pytest (CPython) and under
#   micropython -X heapsize=64K tests/test_protocol_device.py

import mpcompat  # noqa: F401  (puts the repo root on sys.path)

from protocol import hmac256, rx, schema, tx  # noqa: E402
from protocol.errors import AuthError, FrameError, MessageError  # noqa: E402
from protocol.examples import TEST_KEY  # noqa: E402

# tx packs what a device sends; cancel and error travel down as well and have
# layouts tx can pack, so the tests make their frames with it.
tx.KIND[schema.CANCEL] = tx._kinds(schema.CANCEL)
_KEY = hmac256.Key(TEST_KEY)


def _hex(b):
    return "".join(["%02x" % x for x in b])


def _packets(line):
    # Split `line` as the device's UART loop does; return what rx made of
    # each packet: the message, or the error's class name and kind.
    out = []

    def handle(k):
        try:
            out.append(rx.decode(k, key))
        except (FrameError, AuthError, MessageError) as err:
            out.append((type(err).__name__, err.kind))

    key = _key[0]
    rx.feed(line, len(line), handle)
    return out


_key = [None]  # the key the device holds (a list: MicroPython functions take no attributes)


def _wire(code, session, seq, values, key):
    # A copy: tx's buffer is reused by the next frame.
    return b"\x00" + bytes(tx.frame(code, session, seq, values, key))


def test_hmac_rfc4231():
    # RFC 4231 test cases 1, 2 and 6 (key longer than the block).
    assert _hex(hmac256.hmac_sha256(b"\x0b" * 20, b"Hi There")) == (
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    assert _hex(hmac256.hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert _hex(hmac256.hmac_sha256(
        b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")) == (
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    assert len(_KEY.tag(b"x")) == hmac256.TAG_LEN


def test_round_trip_down_messages():
    for key in (None, _KEY):
        rx.reset()
        _key[0] = key
        line = (_wire(schema.CANCEL, 9, 1, ["inv-77"], key)
                + _wire(schema.ERROR, 9, 2, [schema.E_STATE, 41, "no open invitation"], key))
        got = _packets(line)
        assert got == [
            {"type": "cancel", "session": 9, "seq": 1, "invitation": "inv-77"},
            {"type": "error", "session": 9, "seq": 2, "code": schema.E_STATE,
             "ref_seq": 41, "detail": "no open invitation"}], got


def test_up_messages_refused_by_direction():
    # A device's own event echoed back passes every check but its direction.
    rx.reset()
    _key[0] = _KEY
    line = _wire(schema.EVENT, 3, 1, ["dev-1", 2, 5, "rating", 5, [], "inv-1", 0, 100], _KEY)
    assert _packets(line) == [("MessageError", "type")]


def test_every_bit_flip_refused():
    # Each bit of a keyed and an unkeyed frame flipped in turn: the packet is
    # refused by its framing, CRC or tag (never read as a message), or the
    # flip made a 0x00 and split it into pieces that are refused the same way.
    for key in (None, _KEY):
        _key[0] = key
        for code, values in ((schema.CANCEL, ["inv-12345"]),
                             (schema.ERROR, [schema.E_ARG, 7, "bad value"])):
            good = _wire(code, 5, 9, values, key)
            bad = bytearray(good)
            flips = 0
            for i in range(1, len(good) - 1):  # not the delimiters
                for bit in range(8):
                    bad[i] ^= 1 << bit
                    rx.reset()
                    got = _packets(bad)
                    bad[i] ^= 1 << bit
                    flips += 1
                    for r in got:
                        assert isinstance(r, tuple) and r[0] in ("FrameError", "AuthError"), (
                            code, key is not None, i, bit, r)
            rx.reset()
            assert len(_packets(good)) == 1 and flips == 8 * (len(good) - 2)


def test_tag_and_key_mismatch():
    rx.reset()
    _key[0] = _KEY
    assert _packets(_wire(schema.CANCEL, 5, 1, ["inv-1"], None)) == [("AuthError", "untagged")]
    other = hmac256.Key(b"\x01" * len(TEST_KEY))
    assert _packets(_wire(schema.CANCEL, 5, 2, ["inv-1"], other)) == [("AuthError", "badtag")]
    # The same tagged frame is accepted by a device with no key yet (pairing).
    _key[0] = None
    assert _packets(_wire(schema.CANCEL, 5, 3, ["inv-1"], _KEY))[0]["seq"] == 3


def test_replay_refused():
    rx.reset()
    _key[0] = _KEY
    a = _wire(schema.CANCEL, 7, 1, ["inv-1"], _KEY)
    b = _wire(schema.CANCEL, 7, 2, ["inv-2"], _KEY)
    older = _wire(schema.CANCEL, 6, 50, ["inv-3"], _KEY)
    newer = _wire(schema.CANCEL, 8, 1, ["inv-4"], _KEY)
    got = _packets(a + b + a + b + older + newer)
    assert [r["invitation"] if isinstance(r, dict) else r for r in got] == [
        "inv-1", "inv-2", ("AuthError", "replay"), ("AuthError", "replay"),
        ("AuthError", "replay"), "inv-4"], got


def test_overlong_packet_dropped_and_counted():
    rx.reset()
    _key[0] = None
    before = rx.overlong
    line = b"\x00" + b"\x01" * (rx.CAP + 10) + _wire(schema.CANCEL, 1, 1, ["inv-9"], None)
    got = _packets(line)
    assert rx.overlong == before + 1
    assert got == [{"type": "cancel", "session": 1, "seq": 1, "invitation": "inv-9"}], got


if __name__ == "__main__":
    mpcompat.main(globals())
