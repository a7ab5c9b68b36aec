from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.spec.cron import cron_trigger, weekdays

MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, after 09:00


def next_fire(expression: str, after: datetime = MONDAY, zone: str = "UTC") -> datetime:
    fire = cron_trigger(expression, zone).get_next_fire_time(None, after)
    assert fire is not None
    return fire


@pytest.mark.parametrize(("field", "days"), [
    ("1", [1]), ("MON", [1]), ("0", [0]), ("7", [0]), ("sun", [0]), ("1-5", [1, 2, 3, 4, 5]),
    ("mon-fri", [1, 2, 3, 4, 5]), ("*/2", [0, 2, 4, 6]), ("1-5/2", [1, 3, 5]), ("5-7", [0, 5, 6]),
    ("sat,sun", [0, 6]), ("*", [0, 1, 2, 3, 4, 5, 6]),
])
def test_day_of_week_reads_as_standard_cron(field: str, days: list[int]) -> None:
    assert weekdays(field) == days


def test_numeric_weekdays_fire_on_the_standard_day() -> None:
    # `1` is Monday in cron; APScheduler's own from_crontab would take it for Tuesday.
    assert next_fire("0 9 * * 1") == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert next_fire("0 9 * * MON") == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert next_fire("30 8 * * 0") == datetime(2026, 11, 29, 8, 30, tzinfo=UTC)
    assert next_fire("0 12 * * 1-5") == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_time_zone_of_the_trigger() -> None:
    assert next_fire("0 9 * * *", zone="Europe/Madrid") == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["0 9 * *", "0 9 * * 8", "0 9 * * funday", "0 9 * * 5-1", "61 * * * *"])
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(ValueError):
        cron_trigger(expression, UTC)
