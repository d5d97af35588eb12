# Incremental reader: bytes from a serial line in, whole frames out.
#
# Feed it whatever read() returned, in any chunking. It keeps at most one
# partial frame (bounded by MAX_ENCODED: a line that never sends a 0x00 cannot
# eat the heap) and splits on the 0x00 delimiter. Every packet that fails a
# check is counted under its error kind and skipped; the reader never raises.
#
# The buffer is preallocated once and reused, which matters on the device.

from protocol import frame as _frame
from protocol import messages as _messages
from protocol.errors import ProtocolError


class Reader:
    """Split a byte stream into frames.

    packets(chunk) -> list of COBS packets (delimiter removed, not yet checked)
    feed(chunk)    -> list of message dicts; bad frames counted in .errors

    `key_for(frame)` (optional) returns the protocol.hmac256.Key a frame must
    be tagged with, or None to accept it untagged."""

    def __init__(self, key_for=None, max_encoded=_frame.MAX_ENCODED):
        self._buf = bytearray(max_encoded)
        self._len = 0
        self._overflow = False  # dropping bytes until the next delimiter
        self.key_for = key_for
        self.frames = 0  # good messages returned
        self.bytes = 0
        self.errors = {}  # kind -> count

    def count(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def bad(self):
        n = 0
        for k in self.errors:
            n += self.errors[k]
        return n

    def packets(self, chunk, n=None):
        """The packets completed by chunk (its first n bytes: a device
        reads into one buffer)."""
        out = []
        if n is None:
            n = len(chunk)
        self.bytes += n
        cap = len(self._buf)
        start = 0
        mv = memoryview(chunk)
        while start < n:
            end = chunk.find(b"\x00", start, n)
            stop = n if end < 0 else end
            take = stop - start
            if not self._overflow:
                if self._len + take > cap:
                    self._overflow = True
                else:
                    self._buf[self._len : self._len + take] = mv[start:stop]
                    self._len += take
            if end < 0:
                break
            if self._overflow:
                self.count("long")
                self._overflow = False
            elif self._len:
                # One copy out of the buffer (a slice would make two).
                out.append(bytes(memoryview(self._buf)[: self._len]))
            # An empty packet (two delimiters in a row) is just idle line.
            self._len = 0
            start = end + 1
        return out

    def decode(self, packet):
        """Check one packet; return a message dict or raise ProtocolError."""
        fr = _frame.decode(packet)
        if self.key_for is not None:
            key = self.key_for(fr)
            if key is not None:
                fr.verify(key)
        return _messages.parse(fr)

    def feed(self, chunk):
        out = []
        for packet in self.packets(chunk):
            try:
                out.append(self.decode(packet))
                self.frames += 1
            except ProtocolError as err:
                self.count(err.kind)
        return out
