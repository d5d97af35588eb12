# HMAC-SHA256 (RFC 2104) on top of hashlib.sha256, because MicroPython has
# sha256 but no `hmac` module. MicroPython's sha256 objects cannot be copied,
# so the usual trick of caching the hash state after the padded key is not
# available; instead the padded keys themselves are computed once per key
# (Key objects) and each tag costs two sha256 passes over pad + message.

import hashlib

_BLOCK = 64  # SHA-256 block size in bytes
TAG_LEN = 8  # bytes of the HMAC kept on the wire (64-bit truncated tag)


def _pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    k = bytearray(_BLOCK)
    k[: len(key)] = key
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        ipad[i] = k[i] ^ 0x36
        opad[i] = k[i] ^ 0x5C
    return bytes(ipad), bytes(opad)


class Key:
    """A device key with its HMAC pads computed once."""

    def __init__(self, key):
        key = bytes(key)
        if not key:
            raise ValueError("empty key")
        self.raw = key
        self._ipad, self._opad = _pads(key)

    def mac(self, msg):
        """Full 32-byte HMAC-SHA256 of msg."""
        h = hashlib.sha256(self._ipad)
        h.update(msg)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return h.digest()

    def tag(self, msg):
        """The truncated tag carried in frames."""
        return self.mac(msg)[:TAG_LEN]


def hmac_sha256(key, msg):
    return Key(key).mac(msg)


def equal(a, b):
    """Compare two tags in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
