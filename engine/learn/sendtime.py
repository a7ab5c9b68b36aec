"""When each recipient's message goes out, in their local time, inside the campaign's window.

``fixed``: now, if it is inside the window where the recipient lives; otherwise the next
opening of the window. ``optimize``: the local hour at which the recipient has opened and
clicked most, smoothed toward the whole audience's hours so that one click does not decide, and
restricted to the window; the message goes at the next occurrence of that hour.

Vectorized per time zone: recipients are grouped by zone (few) and each group is one set of
numpy operations. The UTC offset of each zone is taken at ``now``; a DST change inside the
planning horizon shifts that zone's hour by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlmodel import Session

from engine.spec.model import Schedule
from engine.store import queries

MODEL_VERSION = "hour-histogram-1"
HISTORY_DAYS = 90
PRIOR_WEIGHT = 2.0  # how many pseudo-events the audience's hour profile is worth per recipient


@dataclass(frozen=True)
class SendTime:
    at: datetime
    local_hour: int
    probability: float
    model: str


def _zone_of(schedule: Schedule, recipient_zone: str) -> str:
    return recipient_zone if schedule.timezone == "recipient" else schedule.timezone


def _allowed_hours(window: tuple[int, int]) -> np.ndarray:
    hours = np.arange(24)
    return np.asarray((hours * 60 + 60 > window[0]) & (hours * 60 < window[1]))


def _next_local(now: datetime, zone: ZoneInfo, hour_starts: np.ndarray) -> np.ndarray:
    """For local minute-of-day values, the next UTC instant (as epoch seconds) at or after now."""
    local_now = now.astimezone(zone)
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = midnight.timestamp() + hour_starts * 60.0
    # A minute that began less than a minute ago is "now", not tomorrow.
    return np.where(candidate < now.timestamp() - 60.0, candidate + 86400.0, candidate)


def plan_send_times(session: Session, schedule: Schedule, recipient_ids: Sequence[str],
                    zones: Sequence[str], now: datetime) -> list[SendTime]:
    """One :class:`SendTime` per recipient (aligned with ``recipient_ids``)."""
    count = len(recipient_ids)
    if count == 0:
        return []
    zone_names = np.array([_zone_of(schedule, z) for z in zones], dtype=object)
    start, end = schedule.window
    allowed = _allowed_hours(schedule.window)
    chosen_minute = np.zeros(count)
    at = np.zeros(count)
    if schedule.send_time == "optimize":
        preference = _hour_preference(session, recipient_ids, zone_names, now)
        hours = np.where(allowed[None, :], preference, -np.inf).argmax(axis=1)
    for name in np.unique(zone_names):
        rows = np.flatnonzero(zone_names == name)
        zone = ZoneInfo(str(name))
        local_now = now.astimezone(zone)
        minute_now = local_now.hour * 60 + local_now.minute + local_now.second / 60
        if schedule.send_time == "optimize":
            minute = np.maximum(hours[rows] * 60.0, start)
            # Inside the preferred hour already: go now rather than tomorrow.
            current = (hours[rows] == local_now.hour) & (minute_now >= start) & (minute_now < end)
            minute = np.where(current, minute_now, minute)
        else:
            inside = start <= minute_now < end
            minute = np.full(len(rows), minute_now if inside else float(start))
        chosen_minute[rows] = minute
        at[rows] = _next_local(now, zone, minute)
    model = MODEL_VERSION if schedule.send_time == "optimize" else "fixed"
    return [SendTime(at=max(datetime.fromtimestamp(float(t), UTC), now), local_hour=int(m // 60) % 24,
                     probability=1.0, model=model)
            for t, m in zip(at, chosen_minute, strict=True)]


def _hour_preference(session: Session, recipient_ids: Sequence[str], zone_names: np.ndarray,
                     now: datetime) -> np.ndarray:
    """(recipients x 24) smoothed share of opens and clicks per local hour."""
    index = {rid: i for i, rid in enumerate(recipient_ids)}
    counts = np.zeros((len(recipient_ids), 24))
    rows = queries.event_times(session, list(recipient_ids), ["open", "click"], now - timedelta(days=HISTORY_DAYS))
    if rows:
        who = np.array([index[r] for r, _ in rows])
        seconds = np.array([ts.timestamp() for _, ts in rows])
        offsets = np.zeros(len(rows))
        for name in np.unique(zone_names[who]):
            offset = now.astimezone(ZoneInfo(str(name))).utcoffset() or timedelta(0)
            offsets[zone_names[who] == name] = offset.total_seconds()
        local_hours = (((seconds + offsets) // 3600) % 24).astype(int)
        np.add.at(counts, (who, local_hours), 1.0)
    population = counts.sum(axis=0) + 1.0
    prior = population / population.sum()
    totals = counts.sum(axis=1, keepdims=True)
    return np.asarray((counts + PRIOR_WEIGHT * prior) / (totals + PRIOR_WEIGHT))
