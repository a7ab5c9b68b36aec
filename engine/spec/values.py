"""Parsers of single values in campaign files.

Each takes the raw value (from TOML or YAML) and returns the typed one, or raises ValueError
saying what was expected; :mod:`engine.spec.load` turns that into a located SpecError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from engine.spec.cron import cron_trigger
from engine.spec.model import BUILTIN_GOALS, NOT_GOALS

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def parse_duration(text: str) -> timedelta:
    """``"48h"``, ``"7d"``, ``"1h30m"``, ``"2w"`` -> timedelta; ValueError if not a duration."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError("a duration such as '30m', '48h', '7d' or '1h30m'")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError("a name of lowercase letters, digits, '-' and '_' (at most 100)")
    return value


def fraction(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"a number from {low} to {high}")
        return float(value)

    return parse


def count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a whole number of at least 1")
    return value


def positive_duration(value: Any) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("a positive duration")
    return duration


def goal(value: Any) -> str:
    if not isinstance(value, str) or not _EVENT_NAME.match(value) or value in NOT_GOALS:
        raise ValueError(f"one of {', '.join(BUILTIN_GOALS)} or the name of a custom event "
                         f"(lowercase; not {', '.join(NOT_GOALS)})")
    return value


def cron(value: Any) -> str:
    if not isinstance(value, str) or len(value.split()) != 5:
        raise ValueError("a 5-field cron expression such as '0 9 * * MON'")
    try:
        cron_trigger(value, UTC)
    except ValueError as exc:
        raise ValueError(f"a valid 5-field cron expression ({exc})") from None
    return value


def instant(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("an ISO 8601 date-time with an offset, e.g. 2026-12-01T09:00Z") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("an ISO 8601 date-time with an offset, e.g. 2026-12-01T09:00Z")
    moment: datetime = value.astimezone(UTC)
    return moment


def zone(value: Any) -> str:
    if value == "recipient":
        return "recipient"
    try:
        ZoneInfo(non_empty_string(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("'recipient' or an IANA time zone such as 'Europe/Madrid'") from None
    return str(value)


def clock_pair(value: Any, expected: str) -> tuple[int, int]:
    """``["HH:MM", "HH:MM"]`` as minutes of the day (``"24:00"`` is 1440); ValueError(expected)."""
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise ValueError(expected)
    minutes = []
    for text in value:
        clock = _CLOCK.match(text)
        if not clock or (clock.group(1) == "24" and clock.group(2) != "00"):
            raise ValueError(expected)
        minutes.append(int(clock.group(1)) * 60 + int(clock.group(2)))
    return minutes[0], minutes[1]


def window(value: Any) -> tuple[int, int]:
    expected = "two local times [\"HH:MM\", \"HH:MM\"], the first earlier, e.g. [\"08:00\", \"21:00\"]"
    start, end = clock_pair(value, expected)
    if start >= end:
        raise ValueError(expected)
    return start, end


def template_text(value: Any) -> str:
    text = non_empty_string(value)
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"a valid template ({exc.message})") from None
    return text


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError("one of " + ", ".join(repr(o) for o in options))
        return str(value)

    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def quiet_hours(value: Any) -> tuple[int, int]:
    expected = ("two local times [\"HH:MM\", \"HH:MM\"] that differ (they may wrap midnight), "
                "e.g. [\"22:00\", \"07:00\"]")
    start, end = (minute % (24 * 60) for minute in clock_pair(value, expected))
    if start == end:
        raise ValueError(expected)
    return start, end


def rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("a number of messages per second greater than 0")
    return float(value)
