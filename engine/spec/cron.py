"""Standard 5-field cron, as campaign files write it, turned into APScheduler 3 triggers.

APScheduler 3 numbers weekdays from Monday (``0`` = Monday), standard cron from Sunday
(``0`` and ``7`` = Sunday, ``1`` = Monday). Handing ``0 9 * * 1`` to
``CronTrigger.from_crontab`` would fire on Tuesdays; so the day-of-week field is rewritten
into weekday names, which both read the same way.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_PART = re.compile(r"^(\*|[a-z]{3}|\d)(?:-([a-z]{3}|\d))?(?:/(\d+))?$")


def _day(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise ValueError(f"day of week {token} (expected 0-7 or sun-sat)")
        return number % 7
    if token not in NAMES:
        raise ValueError(f"day of week {token!r} (expected 0-7 or sun-sat)")
    return NAMES.index(token)


def weekdays(field: str) -> list[int]:
    """The days (0 = Sunday) a standard cron day-of-week field selects."""
    days: set[int] = set()
    for part in field.lower().split(","):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"day-of-week field {field!r}")
        start, end, step = match.groups()
        if start == "*":
            first, last = 0, 6
        else:
            first = _day(start)
            last = (7 if end == "7" else _day(end)) if end else (6 if step else first)
        if last < first:
            raise ValueError(f"day-of-week range {part!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, int(step or 1)))
    return sorted(days)


def cron_trigger(expression: str, timezone: tzinfo | str) -> CronTrigger:
    """An APScheduler trigger firing exactly when standard cron would.

    :raises ValueError: when the expression is not a valid 5-field cron expression.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a 5-field cron expression such as '0 9 * * MON'")
    minute, hour, day, month, day_of_week = fields
    days = weekdays(day_of_week)
    names = "*" if len(days) == 7 else ",".join(NAMES[d] for d in days)
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=names, timezone=timezone)
