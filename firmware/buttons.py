# Five buttons: debounce, presses, stuck detection. Pure logic over levels
# and times in milliseconds, so it runs the same under CPython tests.
#
# Button index i runs left to right: 0 = 5★ (非常满意) ... 4 = 1★ (非常不满意);
# the stars of button i are 5 - i. Health reports `stuck` with bit i = button i.
#
# A press counts on release, not on the down edge: a button that goes down
# and stays down (a jammed key, a coffee cup on the panel) must produce no
# press at all, only a "stuck" report once it has been held for stuck_ms.
# A release after the stuck report clears the bit and is not a press either.
#
# Debounce: a level change counts only once the raw level has stayed the same
# for debounce_ms. Contacts that chatter (down-up-down within a few ms) make
# one press; a glitch shorter than debounce_ms makes none.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


N = const(5)
_QUEUE = const(8)  # presses waiting for the state machine; more are dropped


class Buttons:
    def __init__(self, debounce_ms=30, stuck_ms=5000):
        self.debounce_ms = debounce_ms
        self.stuck_ms = stuck_ms
        self.raw = bytearray(N)  # last raw level seen, 1 = down
        self.since = [0] * N  # when the raw level last changed
        self.level = bytearray(N)  # debounced level
        self.down_at = [0] * N  # when the debounced down began
        self.stuck = 0  # bit mask of buttons held past stuck_ms
        self.queue = []  # button indices pressed, oldest first
        self.dropped = 0  # presses lost to a full queue
        self.stuck_count = 0  # times any button was found stuck

    def set(self, i, down, now):
        """Raw level of button i at time now (from a pin or the sim)."""
        down = 1 if down else 0
        if self.raw[i] != down:
            self.raw[i] = down
            self.since[i] = now

    def pulse(self, i):
        """One clean press (the sim's `press N`): already debounced."""
        if not self.raw[i] and not self.level[i]:
            self._push(i)

    def _push(self, i):
        if len(self.queue) >= _QUEUE:
            self.dropped += 1
        else:
            self.queue.append(i)

    def update(self, now):
        """Settle levels; return True when the stuck mask changed."""
        changed = False
        for i in range(N):
            if self.raw[i] != self.level[i] and now - self.since[i] >= self.debounce_ms:
                self.level[i] = self.raw[i]
                bit = 1 << i
                if self.raw[i]:
                    self.down_at[i] = self.since[i]
                elif self.stuck & bit:
                    self.stuck &= ~bit
                    changed = True
                elif self.since[i] - self.down_at[i] < self.stuck_ms:
                    self._push(i)
            if self.level[i] and not self.stuck & (1 << i):
                if now - self.down_at[i] >= self.stuck_ms:
                    self.stuck |= 1 << i
                    self.stuck_count += 1
                    changed = True
        return changed

    def take(self):
        """The presses since the last call, as button indices."""
        q = self.queue
        if q:
            self.queue = []
        return q

    def due(self, now):
        """Milliseconds until update() has something to decide, or -1."""
        best = -1
        for i in range(N):
            if self.raw[i] != self.level[i]:
                t = self.since[i] + self.debounce_ms - now
            elif self.level[i] and not self.stuck & (1 << i):
                t = self.down_at[i] + self.stuck_ms - now
            else:
                continue
            if t < 0:
                t = 0
            if best < 0 or t < best:
                best = t
        return best
