"""Working days with China's holidays and 调休 (gateway/workdays.py), checked
against the State Council's notices for 2026 by hand: 春节 2026-02-15..23 off
with Saturdays 02-14 and 02-28 worked; 国庆 2026-10-01..07 off with Sunday
09-20 and Saturday 10-10 worked. A year nobody has given is refused, never
guessed."""

import datetime

import pytest

from gateway.workdays import Calendar, UnknownCalendar

D = datetime.date


@pytest.fixture(scope="module")
def cal():
    return Calendar()


@pytest.mark.parametrize("start, n, due", [
    (D(2026, 9, 30), 5, D(2026, 10, 13)),  # Oct 8, 9, 10 (Sat, worked), 12, 13
    (D(2026, 9, 18), 3, D(2026, 9, 22)),   # Sep 19 off, 20 (Sun, worked), 21, 22
    (D(2026, 10, 9), 1, D(2026, 10, 10)),  # a Saturday that is a working day
    (D(2026, 2, 13), 5, D(2026, 2, 27)),   # Feb 14 (Sat, worked), then 24..27
    (D(2026, 2, 13), 1, D(2026, 2, 14)),
    (D(2026, 2, 23), 3, D(2026, 2, 26)),
    (D(2026, 2, 26), 3, D(2026, 3, 2)),    # 27, 28 (Sat, worked), Mar 2
    (D(2026, 12, 1), 5, D(2026, 12, 8)),   # an ordinary week
])
def test_deadlines_across_the_golden_weeks(cal, start, n, due):
    assert cal.add_workdays(start, n) == due


def test_the_days_themselves(cal):
    assert not cal.is_workday(D(2026, 10, 1)) and not cal.is_workday(D(2026, 10, 7))
    assert cal.is_workday(D(2026, 10, 10)) and cal.is_workday(D(2026, 9, 20))
    assert not cal.is_workday(D(2026, 2, 17)) and cal.is_workday(D(2026, 2, 28))
    assert not cal.is_workday(D(2026, 11, 29))  # an ordinary Sunday
    assert cal.workdays_between(D(2026, 9, 30), D(2026, 10, 13)) == 5


def test_a_year_nobody_gave_is_refused_not_guessed(cal):
    with pytest.raises(UnknownCalendar) as err:
        cal.add_workdays(D(2026, 12, 28), 5)  # runs into 2027
    assert "2027" in str(err.value) and "[calendar]" in str(err.value)


def test_a_year_given_in_the_config_is_used():
    cal = Calendar(extra={2027: {"holidays": ["2027-01-01"], "workdays": []}})
    # Dec 28 (Mon) 2026: 29, 30, 31, Jan 1 off, Jan 4, 5
    assert cal.add_workdays(D(2026, 12, 28), 5) == D(2027, 1, 5)
    with pytest.raises(ValueError):
        Calendar(extra={2027: {"holidays": ["2026-01-01"]}})
