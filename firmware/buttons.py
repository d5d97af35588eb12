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


class Buttons:
    def __init__(self, debounce_ms=30, stuck_ms=5000):
        self.debounce_ms = debounce_ms
        self.stuck_ms = stuck_ms
        self.raw = bytearray(5)  # last raw level seen, 1 = down
        self.since = [0] * 5  # when the raw level last changed
        self.level = bytearray(5)  # debounced level
        self.down_at = [0] * 5  # when the debounced down began
        self.stuck = 0  # bit mask of buttons held past stuck_ms
        self.stuck_count = 0  # times a button was found stuck
        self.queue = []  # buttons pressed, oldest first; at most 8 wait
        self.dropped = 0  # presses lost to a full queue

    def set(self, i, down, now):
        """Raw level of button i at time now: 1 down, 0 up. 2 is one clean
        press, already debounced (the sim's `press N`); a held button
        cannot be pressed."""
        if down < 2:
            if self.raw[i] != down:
                self.raw[i] = down
                self.since[i] = now
        elif not (self.raw[i] or self.level[i]):
            if len(self.queue) < 8:
                self.queue.append(i)
            else:
                self.dropped += 1

    def update(self, now):
        """Settle levels, queue presses; True when the stuck mask changed."""
        changed = False
        for i in range(5):
            bit = 1 << i
            if self.raw[i] != self.level[i] and now - self.since[i] >= self.debounce_ms:
                self.level[i] = self.raw[i]
                if self.raw[i]:
                    self.down_at[i] = self.since[i]
                elif self.stuck & bit:
                    self.stuck &= ~bit
                    changed = True
                elif self.since[i] - self.down_at[i] < self.stuck_ms:
                    self.set(i, 2, now)
            if self.level[i] and not self.stuck & bit and now - self.down_at[i] >= self.stuck_ms:
                self.stuck |= bit
                self.stuck_count += 1
                changed = True
        return changed

    def due(self, now):
        """Milliseconds until update() has something to decide, or -1."""
        best = -1
        for i in range(5):
            if self.raw[i] != self.level[i]:
                t = self.since[i] + self.debounce_ms
            elif self.level[i] and not self.stuck & (1 << i):
                t = self.down_at[i] + self.stuck_ms
            else:
                continue
            t = max(0, t - now)
            if best < 0 or t < best:
                best = t
        return best
