"""The evaluation state machine and the button debouncer, as pure logic.

Runs under pytest and under MicroPython (`micropython tests/test_firmware_logic.py`,
driven by test_under_micropython.py): the same file checks both interpreters."""

import mpcompat  # noqa: F401  (puts the repo root on sys.path)

from firmware.buttons import Buttons
from firmware.rating import IDLE, INVITED, REASONS, THANKS, THANKS_MS, Evaluator


class Sink:
    """Journal stand-in: records what the machine asks to journal."""

    def __init__(self, room=100, paired=True):
        self.events = []
        self.room = room
        self.is_paired = paired
        self.fail = False

    def record(self, kind, score, reasons, invitation, at):
        if self.fail or self.room <= 0:
            return False
        self.room -= 1
        self.events.append((kind, score, list(reasons), invitation, at))
        return True

    def has_room(self):
        return self.room > 0

    def paired(self):
        return self.is_paired


def test_good_rating_thanks_then_idle():
    s = Sink()
    ev = Evaluator(s)
    assert ev.invite("INV-1", 1, 10, 1000) == 0 and ev.state == INVITED
    ev.press(5, 2000)
    assert s.events == [(1, 5, [], "INV-1", 2000)]
    assert ev.state == THANKS
    ev.press(4, 2100)  # a second tap is ignored, not a rating, not uninvited
    assert len(s.events) == 1 and ev.uninvited == 0 and ev.ignored == 1
    ev.tick(2000 + THANKS_MS - 1)
    assert ev.state == THANKS
    ev.tick(2000 + THANKS_MS)
    assert ev.state == IDLE


def test_bad_rating_needs_a_reason_and_records_press_time():
    s = Sink()
    ev = Evaluator(s)
    ev.invite("INV-2", 1, 30, 0)
    ev.press(1, 500)  # 1★: reason pages
    assert ev.state == REASONS and s.events == []
    # 8 fallback reasons: two pages. Key 5 (the 1★ button) on page 1 = next.
    ev.press(1, 600)
    assert ev.page == 1 and ev.state == REASONS
    # Key 5 on the last page with nothing ticked: back to page 1, no event.
    ev.press(1, 700)
    assert ev.page == 0 and s.events == []
    ev.press(5, 800)  # key 1: reason R1
    ev.press(3, 900)  # key 3: reason R3
    ev.press(3, 950)  # untick R3
    ev.press(2, 960)  # key 4: R4
    ev.press(1, 1000)  # next page
    ev.press(4, 1100)  # key 2 on page 2: R6
    ev.press(1, 1200)  # confirm
    assert s.events == [(1, 1, ["R1", "R4", "R6"], "INV-2", 500)]
    assert ev.state == THANKS


def test_unconfirmed_bad_rating_times_out_unrated():
    s = Sink()
    ev = Evaluator(s)
    ev.invite("INV-3", 1, 5, 0)
    ev.press(2, 100)
    ev.press(5, 200)  # ticked, never confirmed
    ev.tick(4999)
    assert ev.state == REASONS
    ev.tick(5000)
    assert s.events == [(2, 0, [], "INV-3", 5000)] and ev.state == IDLE


def test_timeout_unrated_and_presses_after_are_uninvited():
    s = Sink()
    ev = Evaluator(s)
    ev.invite("INV-4", 3, 2, 0)
    assert ev.due(0) == 2000
    ev.tick(2000)
    assert s.events == [(2, 0, [], "INV-4", 2000)]
    ev.press(5, 2100)
    assert s.events[-1] == (3, 5, [], "", 2100) and ev.uninvited == 1


def test_uninvited_on_unpaired_device_only_counted():
    s = Sink(paired=False)
    ev = Evaluator(s)
    ev.press(3, 10)
    ev.press(1, 20)
    assert s.events == [] and ev.uninvited == 2


def test_new_invite_closes_open_one_as_unrated():
    s = Sink()
    ev = Evaluator(s)
    ev.invite("A", 1, 10, 0)
    assert ev.invite("A", 1, 10, 500) == 0 and s.events == []  # the same again: no change
    ev.invite("B", 2, 10, 1000)
    assert s.events == [(2, 0, [], "A", 1000)]
    assert ev.state == INVITED and ev.invitation == "B" and ev.cases == 2
    ev.press(3, 1500)
    assert s.events[-1] == (1, 3, [], "B", 1500)


def test_cancel_closes_without_event():
    s = Sink()
    ev = Evaluator(s)
    ev.invite("A", 1, 10, 0)
    assert not ev.cancel("other") and ev.state == INVITED
    assert ev.cancel("A") and ev.state == IDLE and s.events == []


def test_full_journal_refuses_invitation():
    s = Sink(room=1)
    ev = Evaluator(s)
    assert ev.invite("A", 1, 10, 0) == 0
    # Opening B must first close A as unrated: that takes the last slot.
    assert ev.invite("B", 1, 10, 100) == 4
    assert ev.state == IDLE and s.events == [(2, 0, [], "A", 100)]


def test_no_thanks_when_journal_write_fails():
    s = Sink()
    ev = Evaluator(s)
    ev.invite("A", 1, 10, 0)
    s.fail = True
    ev.press(5, 100)
    assert ev.state == INVITED  # never thanked for what is not on flash
    s.fail = False
    ev.press(5, 200)
    assert ev.state == THANKS and s.events == [(1, 5, [], "A", 200)]


def test_config_reasons_replace_fallback():
    s = Sink()
    ev = Evaluator(s)
    ev.set_reasons(["X1", "X2"])
    assert len(ev.reasons) == 2
    ev.invite("A", 1, 10, 0)
    ev.press(2, 10)
    ev.press(4, 20)  # key 2 = X2
    ev.press(3, 30)  # key 3: no reason there, nothing happens
    ev.press(1, 40)  # single page: confirm
    assert s.events == [(1, 2, ["X2"], "A", 10)]


def test_debounce_chatter_makes_one_press():
    b = Buttons(debounce_ms=30, stuck_ms=1000)
    # Contacts chatter for 6 ms, then hold for 80 ms, then release.
    for t, lv in ((0, 1), (2, 0), (3, 1), (5, 0), (6, 1)):
        b.set(2, lv, t)
        b.update(t)
    assert b.due(6) == 30
    b.update(36)
    assert b.level[2] == 1 and b.queue == []
    b.set(2, 0, 86)
    b.update(100)
    assert b.queue == []  # the release is not settled yet
    b.update(116)
    assert b.queue == [2]


def test_glitch_shorter_than_debounce_is_no_press():
    b = Buttons(debounce_ms=30, stuck_ms=1000)
    b.set(0, 1, 0)
    b.set(0, 0, 10)
    b.update(10)
    b.update(100)
    assert b.queue == [] and b.level[0] == 0


def test_stuck_button_reported_and_never_pressed():
    b = Buttons(debounce_ms=30, stuck_ms=500)
    b.set(4, 1, 0)
    assert not b.update(40)
    assert b.due(40) == 460
    assert b.update(500) and b.stuck == 1 << 4
    b.set(4, 2, 600)  # a clean press of a held button cannot happen
    b.set(4, 0, 9000)
    assert b.update(9030) and b.stuck == 0
    assert b.queue == [] and b.stuck_count == 1
    # Other buttons still work meanwhile.
    b.set(1, 2, 9100)
    assert b.queue == [1]


def test_press_queue_is_bounded_and_counts_drops():
    b = Buttons()
    for _ in range(12):
        b.set(0, 2, 0)
    assert len(b.queue) == 8 and b.dropped == 4


def test_resent_invites_never_reopen_nor_disturb():
    # The gateway resends an invite whose `done` it missed: one already
    # answered must not open again (一次一评), nor close the one open now.
    s = Sink()
    ev = Evaluator(s)
    ev.invite("INV-1", 1, 10, 0)
    ev.press(5, 100)
    assert ev.state == THANKS and len(s.events) == 1
    ev.tick(100 + 5000)
    ev.invite("INV-2", 1, 10, 6000)
    ev.press(2, 6100)  # a 差评: on the reason pages now
    assert ev.invite("INV-1", 1, 10, 6200) == 0  # late resend of the answered one
    assert ev.state == REASONS and ev.invitation == "INV-2"
    ev.press(5, 6300)  # key 1: reason 1
    ev.press(1, 6400)  # key 5: next page
    ev.press(1, 6500)  # key 5: confirm
    assert ev.state == THANKS
    assert [e[3] for e in s.events] == ["INV-1", "INV-2"]
    ev.cancel("INV-2")
    ev.tick(7000 + 5000)
    ev.invite("INV-3", 1, 1, 12000)
    assert ev.cancel("INV-3")
    assert ev.invite("INV-3", 1, 1, 12100) == 0 and ev.state == IDLE  # cancelled stays closed


if __name__ == "__main__":
    mpcompat.main(globals())
