"""A device key on CPython: the frame tag by the standard library's `hmac`.

The tag of a frame is HMAC-SHA256(key, signed bytes) truncated to TAG_LEN
bytes (protocol/README.md): on CPython that is `hmac.new(key, data,
sha256).digest()[:8]`, and this is the one place the gateway, the tools,
the benchmarks and the tests make it. protocol/hmac256.py is the device's
own (MicroPython has no `hmac` module); both give the same tags, and both
give the RFC 4231 test vectors (tests/test_hmac_paths.py).

A Key keeps the HMAC state after its padded key and copies it per tag (the
key's two compression blocks are hashed once, not per frame: the gateway
checks a tag on every frame it takes and puts one on every frame it sends).
Its interface is protocol.hmac256.Key's: `raw`, `mac(msg)`, `tag(msg)`,
so protocol.frame and protocol.messages take either.
"""

import hmac

from protocol.hmac256 import TAG_LEN


class Key:
    __slots__ = ("raw", "_state")

    def __init__(self, raw):
        raw = bytes(raw)
        if not raw:
            raise ValueError("empty key")
        self.raw = raw
        self._state = hmac.new(raw, digestmod="sha256")

    def mac(self, msg):
        """The full 32-byte HMAC-SHA256 of msg."""
        h = self._state.copy()
        h.update(msg)
        return h.digest()

    def tag(self, msg):
        """The truncated tag a frame carries."""
        h = self._state.copy()
        h.update(msg)
        return h.digest()[:TAG_LEN]
