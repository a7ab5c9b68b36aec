from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.schedule.triggers import EARLIEST_ZONE, nominal_fire_time, run_key, schedule_trigger, wall_clock
from engine.spec.model import Schedule

MONDAY_9_MADRID = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_a_fixed_zone_cron_fires_at_that_zone_s_time() -> None:
    schedule = Schedule(cron="0 9 * * MON", timezone="Europe/Madrid")
    trigger = schedule_trigger(schedule)
    assert trigger is not None
    assert trigger.get_next_fire_time(None, datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) == MONDAY_9_MADRID
    assert wall_clock(schedule, MONDAY_9_MADRID) is None


def test_a_recipient_time_cron_fires_where_the_day_starts_first() -> None:
    schedule = Schedule(cron="0 9 * * 1", timezone="recipient")
    trigger = schedule_trigger(schedule)
    assert trigger is not None
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    # 09:00 on Monday in UTC+14 is 19:00 UTC on Sunday
    assert fire == datetime(2026, 11, 29, 19, 0, tzinfo=UTC)
    assert fire.astimezone(EARLIEST_ZONE).hour == 9
    assert wall_clock(schedule, fire) == datetime(2026, 11, 30, 9, 0)


def test_the_nominal_fire_time_of_a_late_or_repeated_firing() -> None:
    schedule = Schedule(cron="*/15 * * * *", timezone="UTC")
    trigger = schedule_trigger(schedule)
    assert trigger is not None
    now = datetime(2026, 11, 23, 10, 7, 30, tzinfo=UTC)
    assert nominal_fire_time(trigger, now) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert nominal_fire_time(trigger, datetime(2026, 11, 23, 10, 0, tzinfo=UTC)) == \
        datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    weekly = schedule_trigger(Schedule(cron="0 9 * * MON", timezone="UTC"))
    assert weekly is not None
    assert nominal_fire_time(weekly, datetime(2026, 11, 30, 9, 3, tzinfo=UTC)) == datetime(2026, 11, 30, 9, 0,
                                                                                             tzinfo=UTC)
    assert nominal_fire_time(weekly, datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) is None  # past the grace


def test_one_off_and_event_schedules() -> None:
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    trigger = schedule_trigger(Schedule(at=at))
    assert trigger is not None and trigger.get_next_fire_time(None, at - timedelta(days=1)) == at
    assert run_key(Schedule(at=at), at) == "at:2026-12-01T09:00:00+00:00"
    assert schedule_trigger(Schedule()) is None
