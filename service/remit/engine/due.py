"""When an obligation or a notification is due, from its timescale and the decision time.

Working days are Monday to Friday other than the bank holidays of England and Wales, taken
from the maintained ``holidays`` library (``holidays.country_holidays("GB", subdiv="ENG")``;
England and Wales share one bank-holiday calendar). Days are calendar days in local time,
Europe/London, so that a decision at 00:30 BST is on the day a practitioner would say.

"End of a day" is 23:59:59 local time on that day — the schemes say "same day" and "next
working day", never a closing hour, and a notification of an event that happens out of hours
(Torbay's EDT) is still due that day. A due time is returned in UTC.

Timescales (the scheme format, and the extra forms Torbay Appendix 1 needs):

==========================  ==============================================================
immediately                 the decision time itself
same_day                    end of the decision's calendar day
same_working_day            end of the decision day if it is a working day, else of the
                            next working day
next_working_day            end of the first working day after the decision day
within_N_working_days       end of the Nth working day after the decision day
working_day_N               end of the Nth working day counting the decision day as day 1
                            when it is a working day (Torbay: "Working day 6")
within_N_days / _weeks      end of the calendar day N days / N weeks after the decision day
within_N_hours              the decision time plus N hours
before_decision             the decision time (it must happen before the decision)
at_completion               the decision time (the completion is the event)
after_decision, retrospective, by_timescale, before_due_date, before_period_end, recurring,
unstated                    no computable due time (the document gives none, or it depends
                            on a date the request does not carry; unstated: the row gives
                            no timescale): ``None``
==========================  ==============================================================
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

LONDON = ZoneInfo("Europe/London")
END_OF_DAY = time(23, 59, 59)

NO_DUE = frozenset(
    {
        "after_decision",
        "retrospective",
        "by_timescale",
        "before_due_date",
        "before_period_end",
        "recurring",
        "unstated",
    }
)
_AT_DECISION = frozenset({"immediately", "before_decision", "at_completion"})
_COUNTED = re.compile(
    r"^(?:within_(?P<n>[0-9]+)_(?P<unit>working_days?|days?|weeks?|hours)"
    r"|working_day_(?P<wd>[0-9]+))$"
)
# every timescale this module understands (the JSON Schema uses the same pattern)
PATTERN = (
    r"^(immediately|same_day|same_working_day|next_working_day|within_[0-9]+_working_days?"
    r"|working_day_[0-9]+|within_[0-9]+_days?|within_[0-9]+_weeks?|within_[0-9]+_hours"
    r"|before_decision|after_decision|retrospective|at_completion|by_timescale"
    r"|before_due_date|before_period_end|recurring|unstated)$"
)


# holidays' own working-day helpers (is_working_day, get_nth_working_day) are not used: they
# need one shared calendar object that fills in a year on first lookup, and that is not
# thread-safe (it marks the year done before adding its days, and populates through shared
# state), so a request thread could count a bank holiday as a working day; filling 1990-2100
# up front took 6.8 s here. An immutable set per year, built once, is safe to share.
@lru_cache(maxsize=64)
def _bank_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def is_working_day(day: date) -> bool:
    """Monday to Friday and not an England and Wales bank holiday."""
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def add_working_days(day: date, n: int) -> date:
    """The nth working day after ``day`` (n >= 1)."""
    while n > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            n -= 1
    return day


def _end_of(day: date) -> datetime:
    return datetime.combine(day, END_OF_DAY, tzinfo=LONDON).astimezone(UTC)


def due(timescale: str, decided: datetime) -> datetime | None:
    """The due time (UTC) of ``timescale`` from ``decided``; None when none is computable.

    Raises ValueError for a timescale this module does not know (the compiler only lets
    known ones through, so that is a fault, not a request error).
    """
    if decided.tzinfo is None:
        raise ValueError("decision time must be timezone-aware")
    if timescale in NO_DUE:
        return None
    if timescale in _AT_DECISION:
        return decided.astimezone(UTC)
    local_day = decided.astimezone(LONDON).date()
    if timescale == "same_day":
        return _end_of(local_day)
    if timescale == "same_working_day":
        day = local_day if is_working_day(local_day) else add_working_days(local_day, 1)
        return _end_of(day)
    if timescale == "next_working_day":
        return _end_of(add_working_days(local_day, 1))
    m = _COUNTED.match(timescale)
    if m is None:
        raise ValueError(f"unknown timescale {timescale!r}")
    if m["wd"] is not None:
        n = int(m["wd"])
        if n < 1:
            raise ValueError(f"unknown timescale {timescale!r}")
        first = local_day if is_working_day(local_day) else add_working_days(local_day, 1)
        return _end_of(add_working_days(first, n - 1) if n > 1 else first)
    n, unit = int(m["n"]), m["unit"]
    if unit.startswith("working_day"):
        return _end_of(add_working_days(local_day, n) if n > 0 else local_day)
    if unit == "hours":
        return (decided + timedelta(hours=n)).astimezone(UTC)
    days = n * 7 if unit.startswith("week") else n
    return _end_of(local_day + timedelta(days=days))
