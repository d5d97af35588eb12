# Random values for the tests that compare two codecs (test_protocol_tx,
# test_protocol_rx), under CPython and MicroPython alike. Its own module, not
# part of mpcompat: every test file run under a 64K heap loads mpcompat.

_CHARS = "AZaz09-_\x00\x01\xff é中差评"


def rand_bits(bits):
    import random

    return random.getrandbits(bits)


def rand_text(maxlen):
    """Up to maxlen characters: ASCII, zero and control bytes, CJK."""
    out = ""
    for _ in range(rand_bits(9) % (maxlen + 1)):
        out += _CHARS[rand_bits(5) % len(_CHARS)]
    return out
