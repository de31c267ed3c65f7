"""Waits: a number of days, or until a weekday and hour on the supporter's clock."""

import zoneinfo
from datetime import UTC, datetime

import pytest

from mailings.journeys.engine import supporter_zone, wait_until
from mailings.journeys.models import JourneyStep

LONDON = zoneinfo.ZoneInfo("Europe/London")


def _wait(**fields):
    return JourneyStep(kind=JourneyStep.Kind.WAIT, position=1, **fields)


def test_days_are_days():
    start = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert wait_until(_wait(wait_days=3), start) == datetime(2026, 3, 5, 15, 0, tzinfo=UTC)


def test_until_tuesday_at_ten_uk_time_in_winter_and_summer():
    """10:00 on the next Tuesday in London: 10:00 UTC in winter, 09:00 UTC in summer."""
    step = _wait(wait_weekday=JourneyStep.Weekday.TUESDAY, wait_hour=10)
    friday_winter = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
    assert wait_until(step, friday_winter, LONDON) == datetime(2026, 1, 13, 10, 0, tzinfo=UTC)
    friday_summer = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)
    assert wait_until(step, friday_summer, LONDON) == datetime(2026, 7, 14, 9, 0, tzinfo=UTC)


def test_on_tuesday_after_ten_it_is_next_tuesday():
    step = _wait(wait_weekday=JourneyStep.Weekday.TUESDAY, wait_hour=10)
    assert step.describe() == "Wait until Tuesday at 10:00"
    tuesday_noon = datetime(2026, 1, 13, 12, 0, tzinfo=UTC)
    assert wait_until(step, tuesday_noon, LONDON) == datetime(2026, 1, 20, 10, 0, tzinfo=UTC)


def test_days_then_the_next_morning_at_nine_by_default():
    """ "2 days, then until 09:00": the first 09:00 after the two days."""
    step = _wait(wait_days=2, wait_weekday=None, wait_hour=None)
    step.wait_hour = 9
    assert step.describe() == "Wait 2 days, then until 09:00"
    start = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)  # Monday evening
    assert wait_until(step, start, LONDON) == datetime(2026, 1, 8, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("GB", "Europe/London"),
        ("RW", "Africa/Kigali"),
        ("US", "America/New_York"),
        ("", "Europe/London"),
        ("ZZ", "Europe/London"),
    ],
)
def test_a_supporters_time_zone_follows_their_country_else_uk(country, zone):
    assert supporter_zone(country) == zoneinfo.ZoneInfo(zone)


def test_a_supporter_in_kigali_gets_tuesday_ten_kigali_time():
    step = _wait(wait_weekday=JourneyStep.Weekday.TUESDAY, wait_hour=10)
    friday = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
    assert wait_until(step, friday, supporter_zone("RW")) == datetime(2026, 1, 13, 8, 0, tzinfo=UTC)
