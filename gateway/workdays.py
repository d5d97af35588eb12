"""Working days in China: statutory holidays and 调休 (weekend days that are
working days), for the deadlines after a 差评 (回访 and 整改 within 5 working
days, an appeal within 3: docs/design.md §1).

The calendar is the State Council's yearly notice, as PyPI's
`chinese-calendar` carries it (it says which years it knows). A year the
package does not know yet — the notice for next year comes out in November
or December — may be given in the config (`[calendar]`: that year's
holidays and its working weekend days, typed from the notice). A deadline
that would fall in a year nobody has given is never guessed:
`UnknownCalendar` says which year is missing and how to add it.

    cal = Calendar()                                  # the package's years
    cal = Calendar(extra={2027: {"holidays": [...], "workdays": [...]}})
    cal.add_workdays(date(2026, 9, 30), 5)            # -> 2026-10-13 (国庆 10-01..07 off, 10-10 worked)
"""

import datetime

ONE_DAY = datetime.timedelta(days=1)


class UnknownCalendar(ValueError):
    """A date in a year whose holidays and 调休 nobody has given."""

    def __init__(self, year, known):
        self.year = year
        span = "%d-%d" % (min(known), max(known)) if known else "none"
        super().__init__(
            "the working-day calendar does not know %d yet (known years: %s): a deadline there is not "
            "guessed. Update the package (pip install -U chinese-calendar) or give that year's holidays "
            "and working weekend days, from the State Council's notice, in [calendar] of the config"
            % (year, span))


class Calendar:
    """Which days are working days, for the years known."""

    def __init__(self, extra=None):
        try:
            from chinese_calendar import constants
        except ImportError:  # the package is a dependency; without it only `extra` is known
            constants = None
        self.holidays = set()
        self.workdays = set()  # weekend days that are working days (调休)
        self.years = set()
        if constants is not None:
            self.holidays.update(constants.holidays)
            self.workdays.update(constants.workdays)
            self.years.update(range(min(constants.holidays).year, max(constants.holidays).year + 1))
        for year, days in (extra or {}).items():
            year = int(year)
            hol = [_date(d) for d in days.get("holidays", ())]
            wrk = [_date(d) for d in days.get("workdays", ())]
            for d in hol + wrk:
                if d.year != year:
                    raise ValueError("calendar.%d: %s is not in %d" % (year, d, year))
            self.holidays.difference_update(d for d in list(self.holidays) if d.year == year)
            self.workdays.difference_update(d for d in list(self.workdays) if d.year == year)
            self.holidays.update(hol)
            self.workdays.update(wrk)
            self.years.add(year)

    def known(self, day):
        return day.year in self.years

    def is_workday(self, day):
        day = _date(day)
        if day.year not in self.years:
            raise UnknownCalendar(day.year, self.years)
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_workdays(self, start, n):
        """The n-th working day after `start` (not counting `start` itself):
        a case opened on any day, due within n working days, is due at the
        end of this day."""
        day = _date(start)
        if n < 0:
            raise ValueError("n must be >= 0")
        while n:
            day += ONE_DAY
            if self.is_workday(day):
                n -= 1
        return day

    def workdays_between(self, start, end):
        """Working days after `start` up to and including `end` (0 if end <= start)."""
        day, end, n = _date(start), _date(end), 0
        while day < end:
            day += ONE_DAY
            if self.is_workday(day):
                n += 1
        return n


def _date(d):
    if isinstance(d, datetime.datetime):
        return d.date()
    if isinstance(d, datetime.date):
        return d
    if isinstance(d, str):
        return datetime.date.fromisoformat(d)
    raise TypeError("not a date: %r" % (d,))
