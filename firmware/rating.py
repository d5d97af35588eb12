# The evaluation state machine (一次一评). Pure logic: it is told about
# invitations, presses and the passing of time, and it asks its sink to
# journal events. It never touches a file, a pin or the wire.
#
#   idle ──invite──> invited ──3★..5★──> (journal) thanks ──2.5 s──> idle
#                      │  └──1★/2★──> reasons ──confirm ≥1──> (journal) thanks
#                      └──timeout / new invite──> (journal unrated) idle
#
# - Only the first complete rating of an invitation counts: a 好评 completes
#   on the press, a 差评 when the citizen confirms at least one reason. A 差评
#   whose reasons never got confirmed closes as unrated when time runs out:
#   a 差评 without reasons is never journaled.
# - "thanks" is entered only after the sink said the event is on flash.
# - Presses during thanks are ignored (the citizen's second tap); presses in
#   idle are uninvited: counted, and journaled for audit when the device is
#   paired (sink.paired()), never as ratings.
# - A new invitation while one is open closes the open one as unrated first.
#
# Reason pages, on a five-button device: buttons are numbered 1..5 from the
# left (5★ is key 1, 1★ is key 5). Keys 1-4 toggle the four reasons shown on
# the page, key 5 turns to the next page; on the last page key 5 confirms if
# at least one reason is ticked, otherwise it goes back to the first page.
# The screen prints the key numbers next to the rows and over the buttons.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


IDLE = const(0)
INVITED = const(1)
REASONS = const(2)
THANKS = const(3)
NAMES = ("idle", "invited", "reasons", "thanks")

PAGE = const(4)  # reasons per page: keys 1-4
THANKS_MS = const(2500)

# Event kinds, as on the wire and in the journal.
_RATING = const(1)
_UNRATED = const(2)
_UNINVITED = const(3)

# The 差评 reasons of docs/design.md §1, for a device that never received a config
# from its gateway (their ASCII labels are in screen.py). Codes are
# placeholders until upstream provides them.
FALLBACK = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8")

_OPEN = (INVITED, REASONS)


class Evaluator:
    def __init__(self, sink):
        # sink.record(kind, score, reasons, invitation, at_ms) -> bool
        # (True once the event is durable), sink.has_room() -> bool (a
        # rating would fit the journal), sink.paired() -> bool.
        self.sink = sink
        self.state = IDLE
        self.invitation = ""
        self.cases = 0
        self.deadline = 0  # the invitation's end; later, the thanks' end
        self.star = 0  # the 差评 star pressed, while choosing reasons
        self.at = 0  # when that star was pressed (the event's press time)
        self.page = 0
        self.picked = 0  # bit i = reason i ticked
        self.reasons = FALLBACK
        self.uninvited = 0  # presses with no invitation open (since boot)
        self.ignored = 0  # presses during thanks
        self.version = 0  # bumped on every change the screen must show
        # The last invitations closed here (rated, unrated or cancelled): the
        # gateway resends an invite whose `done` it missed (for at most the
        # invitation's timeout), and a closed one must neither open again
        # (一次一评) nor disturb the one open now.
        self.closed = ["", "", "", "", "", "", "", ""]

    def _ended(self):
        # The open invitation ends here, whichever way.
        self.closed.pop(0)
        self.closed.append(self.invitation)

    def set_reasons(self, codes):
        self.reasons = codes or FALLBACK
        self.picked = self.page = 0
        self.version += 1

    def invite(self, invitation, cases, timeout_s, now):
        """Open an invitation. Return 0, or 4 (E_FULL) when the journal
        could not take its outcome. Re-sending the open one, or one already
        closed, changes nothing."""
        if invitation in self.closed:
            return 0
        if self.state in _OPEN:
            if invitation == self.invitation:
                return 0
            self.close(now)
        if not self.sink.has_room():
            return 4
        self.invitation = invitation
        self.cases = cases
        self.deadline = now + timeout_s * 1000
        self.picked = self.page = 0
        self.state = INVITED
        self.version += 1
        return 0

    def cancel(self, invitation):
        """Withdraw the open invitation if it has this id (no event)."""
        if self.state in _OPEN and invitation == self.invitation:
            self._ended()
            self.state = IDLE
            self.version += 1
            return True
        return False

    def close(self, now):
        """Close an open invitation as unrated (timeout, new invitation,
        unbind)."""
        if self.state in _OPEN:
            self.sink.record(_UNRATED, 0, (), self.invitation, now)
            self._ended()
            self.state = IDLE
            self.version += 1

    def press(self, star, now):
        st = self.state
        self.version += 1
        if st == THANKS:
            self.ignored += 1
        elif st == IDLE:
            self.uninvited += 1
            if self.sink.paired():
                self.sink.record(_UNINVITED, star, (), "", now)
        elif st == INVITED:
            if star >= 3:
                self._rate(star, (), now, now)
            else:
                self.star = star
                self.at = now
                self.state = REASONS
        else:
            # A key on a reason page: 1-4 toggle, 5 next page / confirm.
            key = 6 - star
            n = len(self.reasons)
            if key <= PAGE:
                if self.page * PAGE + key <= n:
                    self.picked ^= 1 << (self.page * PAGE + key - 1)
            elif (self.page + 1) * PAGE < n:
                self.page += 1
            elif self.picked:
                picked = [self.reasons[i] for i in range(n) if self.picked & (1 << i)]
                self._rate(self.star, picked, self.at, now)
            else:
                self.page = 0

    def _rate(self, star, reasons, at, now):
        # Thanks only once the sink has the event on flash. If it could not
        # (a flash error), stay open: the citizen may press again, and the
        # timeout still closes the invitation.
        if self.sink.record(_RATING, star, reasons, self.invitation, at):
            self._ended()
            self.deadline = now + THANKS_MS
            self.state = THANKS

    def tick(self, now):
        if now >= self.deadline:
            if self.state in _OPEN:
                self.close(now)
            elif self.state == THANKS:
                self.state = IDLE
                self.version += 1

    def due(self, now):
        """Milliseconds until tick() has something to do, or -1."""
        if self.state == IDLE:
            return -1
        return self.deadline - now if self.deadline > now else 0
