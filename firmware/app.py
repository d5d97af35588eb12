# The device at run time: the main loop and the glue between the parts.
# boot.py builds it (and is then dropped from RAM); fields set there:
#
#   hal, journal, store-backed settings (device_id, staff_id, window),
#   boot (this boot's number = the link session), buttons, ev (the
#   evaluator), screen, link, heartbeat_ms
#
# The loop sleeps in hal.wait() until the line or a button has something,
# or until the nearest timer (debounce, stuck, invitation, thanks, hello,
# retransmit, heartbeat) is due: an idle evaluator wakes about once a
# second, which is what lets one machine run a thousand simulated ones.

import gc
import time

from firmware import VERSION, orders
from firmware.journal import RATING
from firmware.rating import IDLE, NAMES


class Device:
    fw = VERSION

    def __init__(self):
        self.event_seq = 0  # the last event id given in this boot
        self.heartbeat_ms = 30000
        self.wall = 0  # Unix time at uptime 0, once the gateway set the clock
        self.tz_min = 0
        self.lost = 0  # events the journal could not take
        self.gw_errors = 0  # error frames from the gateway
        self.dirty = True  # something on screen changed
        self.view = None
        self.version = -1
        self.link = None
        self.t = time.ticks_ms()
        self.up = 0

    def now(self):
        """Uptime in ms, never wrapping (ticks_ms wraps; this does not)."""
        t = time.ticks_ms()
        self.up += time.ticks_diff(t, self.t)
        self.t = t
        return self.up

    def clock(self, at):
        """Unix time at uptime `at` ms, or 0 while the clock was never set."""
        return (self.wall + at // 1000) & 0xFFFFFFFF if self.wall else 0

    # The evaluator's sink.

    def record(self, kind, score, reasons, invitation, at):
        """Journal one event; True once it is durable on flash."""
        try:
            s = self.journal.append(self.boot, self.event_seq + 1, kind, score, reasons,
                                    invitation, self.clock(at), at)
        except (OSError, ValueError):
            s = -1
        if s < 0:
            self.lost += 1
            return False
        self.event_seq += 1
        return True

    def has_room(self):
        return self.journal.has_room(RATING)

    def paired(self):
        return bool(self.staff_id) and self.link.key is not None

    def redraw(self):
        v = self.ev.state
        if v != IDLE:
            v = NAMES[v]
        elif not self.has_room():
            v = "full"
        else:
            v = "idle" if self.paired() else "unpaired"
        if v != self.view or self.ev.version != self.version or self.dirty:
            self.view = v
            self.version = self.ev.version
            self.dirty = False
            self.screen.draw(v, self)
            self.hal.show(self.screen.buf, v)

    def run(self):
        hal = self.hal
        link = self.link
        btn = self.buttons
        link.start(self.now())
        self.redraw()
        gc.collect()
        hal.ready(self)
        while True:
            now = self.now()
            for _ in range(16):  # bounded: a flooded line cannot starve buttons
                data = hal.read()
                if not data:
                    break
                for msg in link.receive(data, now):
                    orders.obey(self, msg, now)
            hal.scan(btn, now)
            if btn.update(now) and link.up:
                link.health(now)  # a stuck (or freed) button is news for the admin
            q = btn.queue
            if q:
                btn.queue = []
                for i in q:
                    self.ev.press(5 - i, now)
            self.ev.tick(now)
            link.poll(now)
            self.redraw()
            now = self.now()
            w = 1000  # the longest sleep
            for d in (btn.due(now), self.ev.due(now), link.due(now)):
                if 0 <= d < w:
                    w = d
            hal.wait(w)
