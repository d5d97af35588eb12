# The device at run time: the main loop and the glue between the parts.
# The device is a singleton, so it is this module: its state is the
# module's globals, and the other parts get it as `dev` (a class and its
# instance dict would cost heap for nothing). boot.py fills in:
#
#   hal (the board module), board, journal, boot (this boot's number, the
#   link's session), device_id, staff_id, window, buttons, ev (the
#   evaluator), screen, link
#
# The loop sleeps in hal.wait() until the line or a button has something,
# or until the nearest timer (debounce, stuck, invitation, thanks, hello,
# retransmit, heartbeat) is due: an idle evaluator wakes about once a
# second, which is what lets one machine run a thousand simulated ones.

import gc
import time

from firmware import VERSION as fw  # noqa: F401  (read by link and screen)
from firmware import orders
from firmware.journal import RATING
from firmware.rating import IDLE, NAMES

event_seq = 0  # the last event id given in this boot
heartbeat_ms = 30000
wall = 0  # Unix time at uptime 0, once the gateway set the clock
tz_min = 0
lost = 0  # events the journal could not take
oom = 0  # loop turns cut short by a MemoryError (the heap was too fragmented)
gw_errors = 0  # error frames from the gateway
dirty = True  # something on screen changed
view = None
version = -1
dev = link = None  # dev: this module, for the other parts (set by boot.py)
hal = board = journal = boot = device_id = staff_id = window = None
buttons = ev = screen = None
_t = time.ticks_ms()
_up = 0


def now():
    """Uptime in ms, never wrapping (ticks_ms wraps; this does not)."""
    global _t, _up
    t = time.ticks_ms()
    _up += time.ticks_diff(t, _t)
    _t = t
    return _up


def clock(at):
    """Unix time at uptime `at` ms, or 0 while the clock was never set."""
    return (wall + at // 1000) & 0xFFFFFFFF if wall else 0


# The evaluator's sink.


def record(kind, score, reasons, invitation, at):
    """Journal one event; True once it is durable on flash."""
    global event_seq, lost
    try:
        s = journal.append(boot, event_seq + 1, kind, score, reasons, invitation,
                           clock(at), at)
    except (OSError, ValueError, MemoryError):
        s = -1  # not on flash: the citizen is not thanked
    if s < 0:
        lost += 1
        return False
    event_seq += 1
    return True


def has_room():
    return journal.has_room(RATING)


def paired():
    return bool(staff_id) and link.key is not None


def redraw():
    global view, version, dirty
    v = ev.state
    if v != IDLE:
        v = NAMES[v]
    elif not has_room():
        v = "full"
    else:
        v = "idle" if paired() else "unpaired"
    if v != view or ev.version != version or dirty:
        view = v
        version = ev.version
        dirty = False
        screen.draw(v, dev)
        hal.show(screen.buf, v, ev.invitation if ev.state != IDLE else "")


def run():
    global oom
    btn = buttons
    link.start(now())
    redraw()
    gc.collect()
    print("hcp-fw %s ready: %s boot %d" % (fw, device_id, boot))
    while True:
        try:
            turn(btn)
        except MemoryError as err:
            # Never a crash: whatever this turn was doing is retried by its
            # owner (frames are resent, unacked events retransmitted, the
            # screen redrawn); collect and go on. Counted in health.dropped;
            # the first few go to the console for whoever reads it.
            oom += 1
            gc.collect()
            if oom <= 3:
                import sys

                sys.print_exception(err)


def turn(btn):
    # Buttons before frames: a press completed by now happened before the
    # citizen could see what this turn's frames bring (a new invitation's
    # prompt is drawn at the end of the turn), so it answers what the screen
    # showed: a tap during thanks is ignored, one on the idle card is an
    # uninvited press, never a rating of an invitation not yet on screen.
    # The levels are stamped with the time they are read.
    t = now()
    hal.scan(btn, t)
    changed = btn.update(t)
    q = btn.queue
    if q:
        btn.queue = []
        for i in q:
            ev.press(5 - i, t)
    got = False
    for _ in range(16):  # bounded: a flooded line cannot starve buttons
        n = hal.read()
        if not n:
            break
        got = True
        link.receive(hal.rx, n, now(), orders.obey)
    if got:
        # Frames from the gateway leave garbage (bitmap parts, configs): free
        # it now, while it is one piece, not when an allocation fails.
        gc.collect()
    t = now()
    if (changed or link.faulted != getattr(hal, "fault", 0)) and link.up:
        link.health(t)  # a stuck (or freed) button, a panel gone (or back): news for the admin
    ev.tick(t)
    link.poll(t)
    redraw()
    t = now()
    w = 1000  # the longest sleep
    for d in (btn.due(t), ev.due(t), link.due(t)):
        if 0 <= d < w:
            w = d
    hal.wait(w)

