# The one exception root of the wire protocol.
#
# Every failure to decode bytes from the line raises ProtocolError (or a
# subclass), never struct.error, IndexError or UnicodeError: a reader on a
# noisy serial line counts these by `kind` and carries on.
#
# MicroPython ignores exception chaining (and warns about `raise ... from`),
# so this package raises plainly; the CPython callers chain with `from err`.


class ProtocolError(Exception):
    """Bytes that are not a valid frame or message. `kind` names the check."""

    def __init__(self, kind, detail=""):
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def __str__(self):
        if self.detail:
            return self.kind + ": " + self.detail
        return self.kind


class FrameError(ProtocolError):
    """Framing failed: COBS, length, version or CRC."""


class AuthError(ProtocolError):
    """The HMAC tag is missing, unexpected or wrong, or the frame is a replay."""


class MessageError(ProtocolError):
    """The frame is intact but its payload is not a valid message."""
