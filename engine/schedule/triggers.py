"""When a campaign fires: its schedule as an APScheduler 3 trigger, and the instant each firing
stands for (so a firing is planned once, whichever process fires it and however late).

A cron with ``timezone = "recipient"`` ("Mondays 09:00, each in their own time") fires once, at
that wall-clock time in the earliest time zone on Earth (UTC+14); planning then starts each
recipient's message at the same wall-clock time in their own zone, which is never earlier.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from engine.spec.cron import cron_trigger
from engine.spec.model import Schedule

EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")  # POSIX sign convention: this is UTC+14
MISFIRE_GRACE = timedelta(hours=6)


def schedule_trigger(schedule: Schedule) -> BaseTrigger | None:
    """The trigger of a cron or one-off (``at``) schedule; None for event-triggered or manual ones."""
    if schedule.cron is not None:
        zone = EARLIEST_ZONE if schedule.timezone == "recipient" else ZoneInfo(schedule.timezone)
        return cron_trigger(schedule.cron, zone)
    if schedule.at is not None:
        return DateTrigger(run_date=schedule.at)
    return None


def nominal_fire_time(trigger: BaseTrigger, now: datetime, grace: timedelta = MISFIRE_GRACE) -> datetime | None:
    """The scheduled instant a firing at ``now`` stands for: the latest one in [now - grace, now]."""
    fire: datetime | None = trigger.get_next_fire_time(None, now - grace)
    if fire is None or fire > now:
        return None
    while True:
        following: datetime | None = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if following is None or following > now or following <= fire:
            return fire
        fire = following


def run_key(schedule: Schedule, fire: datetime) -> str:
    """The idempotency key of the run a firing plans (unique per campaign)."""
    kind = "cron" if schedule.cron is not None else "at"
    return f"{kind}:{fire.isoformat()}"


def wall_clock(schedule: Schedule, fire: datetime) -> datetime | None:
    """The local wall-clock time every recipient's message starts from, for recipient-time crons."""
    if schedule.cron is None or schedule.timezone != "recipient":
        return None
    return fire.astimezone(EARLIEST_ZONE).replace(tzinfo=None)
