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

# The 差评 reasons of DESIGN.md §1, for a device that never received a config
# from its gateway. Codes are placeholders until upstream provides them.
FALLBACK = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8")
FALLBACK_LABELS = (
    "Rude service",  # 服务态度差
    "Slow, waiting",  # 办事效率低、等待时间长
    "Unclear/unsure",  # 业务不熟练、解释不清楚
    "Not told once",  # 未一次性告知、需多次跑
    "Extra papers",  # 要求提供指南以外材料
    "Past deadline",  # 未在承诺时限内办结
    "Desk empty",  # 窗口空岗、推诿扯皮
    "Other",  # 其他问题
)


class Evaluator:
    def __init__(self, sink):
        # sink.record(kind, score, reasons, invitation, at_ms) -> bool
        # (True once the event is durable), sink.paired() -> bool.
        self.sink = sink
        self.state = IDLE
        self.invitation = ""
        self.cases = 0
        self.deadline = 0
        self.star = 0  # the 差评 star pressed, while choosing reasons
        self.at = 0  # when that star was pressed (the event's press time)
        self.page = 0
        self.picked = 0  # bit i = reason i ticked
        self.reasons = FALLBACK
        self.uninvited = 0  # presses with no invitation open (since boot)
        self.ignored = 0  # presses during thanks
        self.until = 0  # end of the thanks screen
        self.version = 0  # bumped on every change the screen must show

    def _set(self, state):
        self.state = state
        self.version += 1

    def is_open(self):
        return self.state == INVITED or self.state == REASONS

    def set_reasons(self, codes):
        self.reasons = codes if codes else FALLBACK
        self.picked = 0
        self.page = 0
        self.version += 1

    def pages(self):
        return (len(self.reasons) + PAGE - 1) // PAGE

    def invite(self, invitation, cases, timeout_s, now):
        """Open an invitation. Return 0, or an error code for the gateway:
        4 (journal full). Re-sending the open invitation changes nothing."""
        if self.is_open():
            if invitation == self.invitation:
                return 0
            self._close(now)
        if not self.sink.has_room():
            return 4
        self.invitation = invitation
        self.cases = cases
        self.deadline = now + timeout_s * 1000
        self.picked = 0
        self.page = 0
        self._set(INVITED)
        return 0

    def cancel(self, invitation):
        """Withdraw the open invitation if it has this id (no event)."""
        if self.is_open() and invitation == self.invitation:
            self._set(IDLE)
            return True
        return False

    def close(self, now):
        """Close an open invitation as unrated (e.g. the device was unbound)."""
        if self.is_open():
            self._close(now)

    def _close(self, now):
        self.sink.record(_UNRATED, 0, (), self.invitation, now)
        self._set(IDLE)

    def press(self, star, now):
        st = self.state
        if st == THANKS:
            self.ignored += 1
        elif st == IDLE:
            self.uninvited += 1
            if self.sink.paired():
                self.sink.record(_UNINVITED, star, (), "", now)
            self.version += 1
        elif st == INVITED:
            if star >= 3:
                self._rate(star, (), now, now)
            else:
                self.star = star
                self.at = now
                self.picked = 0
                self.page = 0
                self._set(REASONS)
        else:
            self._reason_key(6 - star, now)

    def _reason_key(self, key, now):
        n = len(self.reasons)
        if key <= PAGE:
            i = self.page * PAGE + key - 1
            if i < n:
                self.picked ^= 1 << i
                self.version += 1
            return
        if self.page + 1 < self.pages():
            self.page += 1
        elif self.picked:
            picked = []
            for i in range(n):
                if self.picked & (1 << i):
                    picked.append(self.reasons[i])
            self._rate(self.star, picked, self.at, now)
            return
        else:
            self.page = 0
        self.version += 1

    def _rate(self, star, reasons, at, now):
        # Thanks only once the sink has the event on flash. If it could not
        # (a flash error), stay open: the citizen may press again, and the
        # timeout still closes the invitation.
        if self.sink.record(_RATING, star, reasons, self.invitation, at):
            self.until = now + THANKS_MS
            self._set(THANKS)

    def tick(self, now):
        if self.is_open() and now >= self.deadline:
            self._close(now)
        elif self.state == THANKS and now >= self.until:
            self._set(IDLE)

    def due(self, now):
        """Milliseconds until tick() has something to do, or -1."""
        if self.is_open():
            t = self.deadline
        elif self.state == THANKS:
            t = self.until
        else:
            return -1
        return t - now if t > now else 0
