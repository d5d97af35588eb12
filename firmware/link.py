# The link to the gateway (docs/link.md is the contract; protocol/ the bytes).
#
# - Start: one 0x00 (closes any partial frame at the peer), then `hello`,
#   repeated every 2 s, doubling up to 10 s, until any valid frame arrives.
# - Then the journal's unacknowledged events go out oldest first, at most
#   _WINDOW in flight. If no ACK comes, the window is sent again after 1 s,
#   doubling up to 30 s; any ACK resets that to 1 s. After _FORGOTTEN
#   rounds with no frame at all from the gateway the link starts over with
#   hello (the gateway may have lost track of the device).
# - `health` every heartbeat, and at once when a button gets stuck or freed
#   or the panel stops or starts answering.
# - The device key is written over the USB cable by the technician's tool
#   (store.key()); it never travels on the link. Every frame out is tagged
#   with it, and every frame in must be tagged with it: an untagged or
#   badly tagged frame, or a replay of an older (session, seq), is refused
#   with `error` 2 and counted. A device without a key only says hello (so
#   the technician sees it) and obeys nothing: the gateway does not talk to
#   it, and whatever else speaks on its line cannot be told from the gateway.
#
# Frame seq counts from 1 in each boot; the session is the boot number.
# The link is a singleton: its state is this module's globals.
# Frames go out through protocol.tx and come in through protocol.rx: each
# packs or reads a frame in its one buffer, allocated at boot, so a heap
# fragmented by months of running still sends and receives (the general
# codec, protocol.messages, copies a frame four or five times over and is
# never loaded on the device).

import gc

from protocol import rx, tx
from protocol.errors import AuthError, FrameError, ProtocolError
from protocol.hmac256 import Key
from protocol.schema import KINDS

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_HELLO = const(0x01)
_EVENT = const(0x02)
_HEALTH = const(0x03)
_ERROR = const(0x7F)
_WINDOW = const(8)  # events in flight at most
_FORGOTTEN = const(3)  # silent retransmit rounds before a new hello

dev = None  # the device (firmware.app), set by init()
seq = 0
key = None  # protocol.hmac256.Key once provisioned
sent = None
_now = 0  # receive()'s arguments, for _packet() (a closure would cost heap)
_obey = None
up = False  # the gateway has answered since the last hello
t_hello = gap = t_retx = t_health = 0
backoff = 1000
quiet = 0  # retransmit rounds with nothing heard
bad = 0  # frames that failed their checks
refused = 0  # frames refused for authentication or replay
faulted = 0  # the display fault the last health reported


def init(device):
    global dev, sent
    dev = device
    sent = bytearray(device.journal.slots)  # slot sent in this round


def set_key(raw):
    global key
    key = Key(raw) if raw else None


def out(code, *values):
    """Send message `code` with its fields' values in table order; code 0
    writes the bare delimiter. The line being down is no error: hello and
    retransmission cover it."""
    global seq
    try:
        if not code:
            dev.hal.write(b"\x00")
            return
        seq += 1
        dev.hal.write(tx.frame(code, dev.boot, seq, values, key))
    except OSError:
        pass


def start(now):
    """(Re)start the link: delimiter, hello; everything is resent."""
    global up, gap
    out(0)
    up = False
    for i in range(len(sent)):
        sent[i] = 0
    gap = 2000
    hello(now)


def hello(now):
    global t_hello, gap
    d = dev
    out(_HELLO, d.device_id, d.fw, d.board, d.boot, len(d.journal.live),
        now & 0xFFFFFFFF, d.staff_id, 1 if key else 0)
    t_hello = now + gap
    gap = min(gap * 2, 10000)


def health(now):
    global t_health, faulted
    d = dev
    j = d.journal
    gc.collect()
    # The board's faults (firmware/hal_machine.py; the sim board has none):
    # a panel that does not answer, and how often the UART ring overflowed.
    h = d.hal
    fault = getattr(h, "fault", 0)
    out(_HEALTH, d.device_id, now & 0xFFFFFFFF, d.clock(now), gc.mem_free(), len(j.live),
        j.slots - len(j.live), d.lost + d.buttons.dropped + d.oom, j.corrupt, d.ev.uninvited,
        d.buttons.stuck, d.fw, d.staff_id, fault, getattr(h, "overruns", 0))
    t_health = now + d.heartbeat_ms
    faulted = fault


def receive(chunk, n, now, obey):
    """The first n bytes of chunk from the line: each valid, authenticated
    message of the gateway goes to obey(dev, msg, now) as soon as it is
    decoded (its frame is still in rx's buffer: nothing is collected)."""
    global _now, _obey
    _now = now
    _obey = obey
    rx.feed(chunk, n, _packet)


def _packet(k):
    # One packet, in rx.buf[:k].
    global bad, refused, quiet, up, t_retx
    if key is None:
        refused += 1  # unprovisioned: nobody here can be trusted
        return
    try:
        msg = rx.decode(k, key)
    except FrameError:
        bad += 1  # line noise: counted, not answered
        return
    except AuthError as err:
        refused += 1
        out(_ERROR, 2, rx.last_seq, err.kind)
        return
    except ProtocolError as err:
        bad += 1
        out(_ERROR, 3 if err.kind == "type" else 6, rx.last_seq, err.kind)
        return
    except MemoryError as err:
        # Even the dict of a message may not fit a heap in pieces: dropped
        # and counted with the loop's (health `dropped`); the gateway resends
        # commands until they are done.
        gc.collect()
        dev.oom += 1
        if dev.oom <= 3:
            import sys

            sys.print_exception(err)
        return
    quiet = 0
    if not up:
        up = True
        t_retx = _now
    _obey(dev, msg, _now)


def poll(now):
    global quiet, backoff, t_retx
    if not up:
        if now >= t_hello:
            hello(now)
        return
    j = dev.journal
    live = j.live
    k = min(_WINDOW, len(live))
    if k and now >= t_retx and sent[live[0]]:
        # Nothing acknowledged in time: send the whole window again.
        quiet += 1
        if quiet > _FORGOTTEN:
            quiet = 0
            start(now)
            return
        for i in range(k):
            sent[live[i]] = 0
        backoff = min(backoff * 2, 30000)
    for i in range(k):
        s = live[i]
        if sent[s]:
            continue
        sent[s] = 1
        t_retx = now + backoff
        b, q, kind, score, t, up_ms, inv, reasons = j.read(s)
        try:
            out(_EVENT, dev.device_id, b, q, KINDS[kind], score, reasons, inv, t, up_ms)
        except ProtocolError:
            # A record the wire refuses can only be flash damage that kept
            # its CRC: no gateway would ever ACK it, and it must not block
            # the ones behind it. Drop it and count it as corrupt.
            j.ack(b, q)
            j.corrupt += 1
            break
    if now >= t_health:
        health(now)


def acked(s, now):
    global backoff, t_retx
    sent[s] = 0
    backoff = 1000
    t_retx = now + 1000


def due(now):
    t = t_hello
    if up:
        t = t_health
        live = dev.journal.live
        if live and sent[live[0]] and t_retx < t:
            t = t_retx
    return max(0, t - now)
