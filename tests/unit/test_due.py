"""Due times on the England and Wales working-day calendar (holidays library, Europe/London)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from remit.engine import due as _due


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Friday 22 August 2025, 10:00 BST; Monday 25 August 2025 is the Summer bank holiday.
FRI_BEFORE_BANK_HOLIDAY = _utc(2025, 8, 22, 9, 0)


@pytest.mark.parametrize(
    ("timescale", "decided", "expected"),
    [
        ("immediately", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 22, 9, 0)),
        ("before_decision", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 22, 9, 0)),
        ("at_completion", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 22, 9, 0)),
        # end of the local day: 23:59:59 BST is 22:59:59 UTC
        ("same_day", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 22, 22, 59, 59)),
        ("same_working_day", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 22, 22, 59, 59)),
        # across the weekend and the bank holiday: Tuesday 26 August
        ("next_working_day", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 26, 22, 59, 59)),
        ("within_1_working_day", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 26, 22, 59, 59)),
        ("within_2_working_days", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 27, 22, 59, 59)),
        ("within_10_working_days", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 9, 8, 22, 59, 59)),
        # calendar days and weeks ignore the calendar of working days
        ("within_5_days", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 27, 22, 59, 59)),
        ("within_1_week", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 29, 22, 59, 59)),
        ("within_72_hours", FRI_BEFORE_BANK_HOLIDAY, _utc(2025, 8, 25, 9, 0)),
        # a Saturday: the same working day is the next one (Tuesday, after the bank holiday)
        ("same_working_day", _utc(2025, 8, 23, 12, 0), _utc(2025, 8, 26, 22, 59, 59)),
        ("same_day", _utc(2025, 8, 23, 12, 0), _utc(2025, 8, 23, 22, 59, 59)),
        # Torbay "Working day 6": Monday 18 August is day 1; 25 August is a bank holiday
        ("working_day_6", _utc(2025, 8, 18, 9, 0), _utc(2025, 8, 26, 22, 59, 59)),
        ("working_day_1", _utc(2025, 8, 23, 9, 0), _utc(2025, 8, 26, 22, 59, 59)),
        # Christmas 2026: 25 Fri, weekend, 28 Mon Boxing Day (substitute); GMT
        ("next_working_day", _utc(2026, 12, 24, 15, 0), _utc(2026, 12, 29, 23, 59, 59)),
        # Easter 2026: Good Friday 3 April, Easter Monday 6 April
        ("within_1_working_day", _utc(2026, 4, 2, 16, 0), _utc(2026, 4, 7, 22, 59, 59)),
        # 23:30 UTC on 30 June is 00:30 BST on 1 July: the local day is 1 July
        ("same_day", _utc(2025, 6, 30, 23, 30), _utc(2025, 7, 1, 22, 59, 59)),
    ],
)
def test_due(timescale: str, decided: datetime, expected: datetime) -> None:
    assert _due.due(timescale, decided) == expected


@pytest.mark.parametrize("timescale", sorted(_due.NO_DUE))
def test_no_computable_due(timescale: str) -> None:
    assert _due.due(timescale, FRI_BEFORE_BANK_HOLIDAY) is None


def test_calendar_comes_from_the_holidays_library() -> None:
    import holidays

    cal = holidays.country_holidays("GB", subdiv="ENG", years=2025)
    assert date(2025, 8, 25) in cal
    assert not _due.is_working_day(date(2025, 8, 25))
    assert not _due.is_working_day(date(2025, 8, 23))
    assert _due.is_working_day(date(2025, 8, 26))


@pytest.mark.parametrize("timescale", ["fortnightly", "within_x_days", "working_day_0", ""])
def test_unknown_timescale_is_a_fault(timescale: str) -> None:
    with pytest.raises(ValueError, match="timescale"):
        _due.due(timescale, FRI_BEFORE_BANK_HOLIDAY)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        _due.due("immediately", datetime(2025, 8, 22, 9, 0))


def test_every_pattern_timescale_is_understood() -> None:
    for ts in ("within_3_working_days", "within_1_day", "within_2_weeks", "working_day_6"):
        assert re.match(_due.PATTERN, ts)
        _due.due(ts, FRI_BEFORE_BANK_HOLIDAY)
