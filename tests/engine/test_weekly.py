"""Which report period is due, in the team's time zone, whatever restarts and stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from engine.weekly import Period, ReportSchedule, day_slices, due_period, last_days

BERLIN = ZoneInfo("Europe/Berlin")
SCHEDULE = ReportSchedule(channel="C0REPORTS", cron="0 9 * * MON", tz="Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_a_period_ends_at_the_firing_itself_not_a_second_later():
    at_nine = due_period(SCHEDULE, berlin(2026, 12, 7, 9, 0))
    assert (at_nine.start, at_nine.end) == (berlin(2026, 11, 30, 9), berlin(2026, 12, 7, 9))
    before = due_period(SCHEDULE, berlin(2026, 12, 7, 8, 59, 59))
    assert before.end == berlin(2026, 11, 30, 9)


def test_weeks_missed_while_down_make_one_due_period_the_latest():
    three_weeks_on = due_period(SCHEDULE, berlin(2026, 12, 30, 17, 0))
    assert three_weeks_on == Period(start=berlin(2026, 12, 21, 9), end=berlin(2026, 12, 28, 9))


def test_the_time_zone_holds_across_summer_time():
    # Berlin moves to summer time on Sunday 29 March 2026: 09:00 is 08:00 UTC before, 07:00 after.
    spring = due_period(SCHEDULE, datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert spring.end.astimezone(UTC) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert spring.start.astimezone(UTC) == datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
    days = day_slices(spring, BERLIN)
    assert len(days) == 7
    real = [(d.end.astimezone(UTC) - d.start.astimezone(UTC)) / timedelta(hours=1) for d in days]
    assert real == [24, 24, 24, 24, 24, 23, 24]  # the night the clocks went forward


def test_days_of_a_period_that_is_not_whole_days_end_with_a_short_one():
    period = last_days(berlin(2026, 12, 7, 12), 2, BERLIN)
    shorter = Period(start=period.start, end=period.end - timedelta(hours=3))
    assert [d.end - d.start for d in day_slices(shorter, BERLIN)] == [
        timedelta(days=1),
        timedelta(hours=21),
    ]
    assert period.before() == Period(start=berlin(2026, 12, 3, 12), end=berlin(2026, 12, 5, 12))


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("cron", "0 9 * *", "not a cron expression of five fields"),
        ("cron", "61 9 * * MON", "not a cron expression"),
        ("tz", "Mars/Olympus", "not a known time zone"),
        ("tz", "../../etc/passwd", "not a known time zone"),
        ("channel", "#reports", "not a channel ID"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(field, value, said):
    fields = {"channel": "C0REPORTS", field: value}
    with pytest.raises(ValidationError) as refused:
        ReportSchedule(**fields)
    [error] = refused.value.errors()
    assert error["loc"] == (field,) and said in error["msg"]
