"""Capped exponential back-off, the one formula of every retry in the
gateway: a forwarder reconnecting to its upstream (with jitter), a serial
port re-opened, a command to a device sent again (gateway/devices/downlink.py).

    b = Backoff(0.2, 30.0)          # 0.2, 0.4, 0.8 ... 30, 30 (each in its upper half: jitter)
    time.sleep(b.next()); ...; b.reset()   # after a success
    Backoff(1.0, 8.0, jitter=False).delay(n)   # the n-th retry's delay, nothing kept
"""

import random


class Backoff:
    """Delays minimum, 2*minimum, 4*minimum ... up to maximum. With
    `jitter`, each is drawn from its upper half (base/2 .. base), so that
    many clients that failed together do not retry together."""

    def __init__(self, minimum, maximum, jitter=True, rng=None):
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.jitter = jitter
        self.attempt = 0
        self.rng = rng or random.Random()

    def delay(self, attempt):
        """The delay before retry number `attempt` (0: the first)."""
        base = min(self.maximum, self.minimum * (2 ** min(attempt, 30)))
        return base * (0.5 + 0.5 * self.rng.random()) if self.jitter else base

    def next(self):
        d = self.delay(self.attempt)
        self.attempt += 1
        return d

    def reset(self):
        self.attempt = 0
