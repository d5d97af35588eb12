"""Commands to devices that must arrive: kept until the device confirms them.

A command frame (invite, cancel, time, bind, unbind, bitmap, config) can be
lost to line noise, to a device whose heap had no room for it at that moment,
or to a reboot. The device answers every command it applies with `done`
naming the frame's seq, and one it refuses with `error` naming it
(docs/link.md). Until then the command stays here and is sent again — same
content, a new seq (a replayed seq would be refused) — after 1 s, doubling to
8 s, while the device is online, for at most 60 s, or until its own
deadline (an invitation that has timed out is not worth opening).

Everything here runs under its own lock; sending goes through the router.
"""

import itertools
import logging
import threading
import time

from gateway.backoff import Backoff

log = logging.getLogger("hcp.gateway.devices.downlink")

CONFIRMED = ("invite", "cancel", "time", "bind", "unbind", "bitmap", "config")
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 8.0
GIVE_UP_S = 60.0
RETRY = Backoff(FIRST_RETRY_S, MAX_RETRY_S, jitter=False)  # 1, 2, 4, 8, 8 ... s
MAX_PENDING = 20000  # all devices; beyond, the oldest are forgotten (counted)


class _Pending:
    __slots__ = ("device_id", "msg", "first", "next_at", "tries", "deadline")

    def __init__(self, device_id, msg, now, deadline):
        self.device_id = device_id
        self.msg = msg  # the command without session/seq
        self.first = now
        self.next_at = now + FIRST_RETRY_S
        self.tries = 1
        self.deadline = deadline


class Downlink:
    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}  # (device_id, seq) -> _Pending
        self._held = itertools.count(1)  # keys for commands waiting for their device
        self.stats = {"sent": 0, "confirmed": 0, "refused": 0, "resent": 0, "gave_up": 0, "forgotten": 0}

    def sent(self, device_id, seq, msg, now=None, deadline=None):
        """A command went out with `seq`: keep it until answered."""
        now = time.time() if now is None else now
        entry = {k: v for k, v in msg.items() if k not in ("session", "seq")}
        with self.lock:
            self.pending[(device_id, seq)] = _Pending(device_id, entry, now,
                                                      min(deadline or now + GIVE_UP_S, now + GIVE_UP_S))
            self.stats["sent"] += 1
            while len(self.pending) > MAX_PENDING:
                self.pending.pop(next(iter(self.pending)))
                self.stats["forgotten"] += 1

    def answered(self, device_id, ref_seq, refused=False):
        with self.lock:
            if self.pending.pop((device_id, ref_seq), None) is not None:
                self.stats["refused" if refused else "confirmed"] += 1
                return True
        return False

    def forget(self, device_id, kinds=None):
        """Drop a device's pending commands (of `kinds`, or all)."""
        with self.lock:
            for k in [k for k, p in self.pending.items()
                      if p.device_id == device_id and (kinds is None or p.msg["type"] in kinds)]:
                del self.pending[k]

    def forget_invite(self, device_id, invitation):
        """Drop the pending resends of one invitation (it was cancelled)."""
        with self.lock:
            for k in [k for k, p in self.pending.items()
                      if p.device_id == device_id and p.msg["type"] == "invite"
                      and p.msg["invitation"] == invitation]:
                del self.pending[k]

    def due(self, now=None):
        """Pending commands to send again now: [(device_id, msg)];
        the caller sends each and calls sent() with its new seq."""
        now = time.time() if now is None else now
        out = []
        with self.lock:
            for k in list(self.pending):
                p = self.pending[k]
                if now >= p.deadline:
                    del self.pending[k]
                    self.stats["gave_up"] += 1
                    log.warning("device %s never confirmed %s after %d tries", p.device_id,
                                p.msg["type"], p.tries)
                elif now >= p.next_at:
                    del self.pending[k]
                    out.append(p)
        return out

    def requeue(self, p, seq, now=None):
        """p was sent again as `seq`."""
        now = time.time() if now is None else now
        p.tries += 1
        p.next_at = now + RETRY.delay(p.tries - 1)
        with self.lock:
            self.pending[(p.device_id, seq)] = p
            self.stats["resent"] += 1

    def hold(self, p, now=None):
        """p could not be sent (device offline): try again later. It has no
        seq on the wire, so it waits under a key no `done` can match."""
        now = time.time() if now is None else now
        p.next_at = now + FIRST_RETRY_S
        with self.lock:
            self.pending[(p.device_id, "held", next(self._held))] = p
