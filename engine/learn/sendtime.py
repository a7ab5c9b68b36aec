"""When each recipient's message goes out, in their local time, inside the campaign's window.

``fixed``: now, if it is inside the window (and outside quiet hours) where the recipient lives;
otherwise the next allowed minute. ``optimize``: the hour of the next 24 whose hour of the week
the recipient is most active in, estimated hierarchically so that a little history does not
decide alone:

- the population's hour-of-day profile (opens and clicks of everyone, by local hour, +1 each);
- each recipient's hour-of-day profile, smoothed toward the population's with
  :data:`DAY_PRIOR` pseudo-events (a Dirichlet-multinomial posterior mean);
- each recipient's hour-of-week profile, smoothed toward their own hour-of-day profile (spread
  over the seven days) with :data:`WEEK_PRIOR` pseudo-events.

Only hours inside the window and outside quiet hours are candidates. With ``exploration`` e,
candidates are drawn by probability matching: P(hour) proportional to its preference raised to
:data:`SHARPNESS`, so a recipient with clear history almost always gets their hour while one
with none is spread over the hours people are usually active in (and so teaches us theirs);
then e of the probability is spread evenly over every candidate. The probability is logged. A staged
test's held-back share is planned from ``start`` (``now`` + the wait) instead of ``now``.

Vectorized per time zone (few); the UTC offset of a zone is taken at ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.features.events import load_events
from engine.features.recipients import HOURS_OF_WEEK, event_offsets, hour_of_week, zone_offsets
from engine.spec.model import CampaignSpec, Schedule

MODEL_VERSION = "hour-of-week-hierarchical-1"
HISTORY_DAYS = 90
DAY_PRIOR = 3.0    # pseudo-events of the population's hour-of-day profile per recipient
WEEK_PRIOR = 2.0   # pseudo-events of the recipient's own hour-of-day profile per hour-of-week row
SHARPNESS = 4.0    # exponent of probability matching: higher exploits the estimated best hour more


@dataclass(frozen=True)
class SendTime:
    at: datetime
    local_hour: int
    probability: float
    model: str


def allowed_minutes(schedule: Schedule) -> np.ndarray:
    """(1440,) True for each local minute of the day a message may go out."""
    minutes = np.arange(24 * 60)
    allowed = (minutes >= schedule.window[0]) & (minutes < schedule.window[1])
    if schedule.quiet_hours is not None:
        start, end = schedule.quiet_hours
        quiet = (minutes >= start) & (minutes < end) if start < end else (minutes >= start) | (minutes < end)
        allowed &= ~quiet
    return np.asarray(allowed)


def hour_preferences(week_counts: np.ndarray) -> np.ndarray:
    """(recipients x 168) smoothed hour-of-week preference from opens and clicks by local hour of week."""
    n = len(week_counts)
    by_hour = week_counts.reshape(n, 7, 24).sum(axis=1)
    population = by_hour.sum(axis=0) + 1.0
    population /= population.sum()
    own_day = (by_hour + DAY_PRIOR * population) / (by_hour.sum(axis=1, keepdims=True) + DAY_PRIOR)
    prior_week = np.tile(own_day, 7) / 7.0
    return np.asarray((week_counts + WEEK_PRIOR * prior_week) / (week_counts.sum(axis=1, keepdims=True) + WEEK_PRIOR))


def activity_by_hour_of_week(session: Session, recipient_ids: Sequence[str], zones: Sequence[str],
                             now: datetime) -> np.ndarray:
    """(recipients x 168) opens and clicks of the last 90 days by local hour of the week."""
    events = load_events(session, recipient_ids, now - timedelta(days=HISTORY_DAYS), now, types=["open", "click"])
    counts = np.zeros((len(recipient_ids), HOURS_OF_WEEK))
    known = events.recipient >= 0
    who = events.recipient[known]
    local = events.ts[known] + event_offsets(zones, who, events.ts[known])
    np.add.at(counts, (who, hour_of_week(local)), 1.0)
    return counts


def choose_send_times(preference: np.ndarray | None, offsets: np.ndarray, schedule: Schedule, start: float,
                      exploration: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, probability) per recipient: the send instant at or after ``start``.

    :param preference: (recipients x 168) hour-of-week preference, or None for ``fixed``.
    :param offsets: each recipient's UTC offset in seconds.
    """
    n = len(offsets)
    allowed = allowed_minutes(schedule)
    local_start = start + offsets
    # Candidate k is local hour floor(start) + k, from its first allowed minute (the current hour
    # from now): 24 candidates cover every hour of the day once.
    hour_start = np.floor(local_start / 3600.0)[:, None] * 3600.0 + np.arange(24)[None, :] * 3600.0
    begin = np.maximum(hour_start, local_start[:, None])
    offset_in_hour = ((begin - hour_start) // 60).astype(np.int64)
    hour_allowed = allowed.reshape(24, 60)
    hour_of_day = ((hour_start // 3600) % 24).astype(np.int64)
    # The first allowed minute of each candidate hour at or after ``begin``, if any.
    open_minutes = hour_allowed[hour_of_day] & (np.arange(60)[None, None, :] >= offset_in_hour[:, :, None])
    has_minute = np.asarray(open_minutes.any(axis=2))
    first_minute = open_minutes.argmax(axis=2)
    local_at = hour_start + first_minute * 60.0
    if preference is None:
        chosen = has_minute.argmax(axis=1)
        probability = np.ones(n)
    else:
        week_hour = ((hour_start // 3600).astype(np.int64) + 72) % HOURS_OF_WEEK
        value = np.where(has_minute, np.take_along_axis(preference, week_hour, axis=1), 0.0)
        weights = np.power(value / np.maximum(value.max(axis=1, keepdims=True), 1e-12), SHARPNESS)
        count = np.maximum(has_minute.sum(axis=1, keepdims=True), 1)
        matched = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        distribution = (1.0 - exploration) * matched + exploration * has_minute / count
        cumulative = np.cumsum(distribution, axis=1)
        u = rng.random(n) * cumulative[:, -1]
        chosen = np.minimum((cumulative <= u[:, None]).sum(axis=1), 23)
        chosen = np.where(has_minute[np.arange(n), chosen], chosen, distribution.argmax(axis=1))
        probability = distribution[np.arange(n), chosen]
    rows = np.arange(n)
    at = np.where(has_minute[rows, chosen], local_at[rows, chosen] - offsets, start)
    return np.maximum(at, start), probability


def plan_send_times(session: Session, schedule: Schedule, recipient_ids: Sequence[str], zones: Sequence[str],
                    now: datetime, *, exploration: float = 0.0, rng: np.random.Generator | None = None,
                    delayed: np.ndarray | None = None, delay: timedelta = timedelta(0)) -> list[SendTime]:
    """One :class:`SendTime` per recipient (aligned with ``recipient_ids``).

    :param delayed: recipients planned from ``now + delay`` rather than ``now`` (a staged test's
        held-back share).
    """
    count = len(recipient_ids)
    if count == 0:
        return []
    rng = rng if rng is not None else np.random.default_rng(int(now.timestamp()))
    zone_names = [z if schedule.timezone == "recipient" else schedule.timezone for z in zones]
    offsets = zone_offsets(zone_names, now)
    optimize = schedule.send_time == "optimize"
    preference = hour_preferences(activity_by_hour_of_week(session, recipient_ids, zone_names, now)) \
        if optimize else None
    start = np.full(count, now.timestamp())
    if delayed is not None:
        start = np.where(delayed, start + delay.total_seconds(), start)
    at = np.zeros(count)
    probability = np.ones(count)
    for begin in np.unique(start):
        rows = np.flatnonzero(start == begin)
        at[rows], probability[rows] = choose_send_times(
            preference[rows] if preference is not None else None, offsets[rows], schedule, float(begin),
            exploration if optimize else 0.0, rng)
    local_hour = (((at + offsets) // 3600) % 24).astype(int)
    model = MODEL_VERSION if optimize else "fixed"
    return [SendTime(at=datetime.fromtimestamp(float(t), UTC), local_hour=int(h), probability=float(p), model=model)
            for t, h, p in zip(at, local_hour, probability, strict=True)]


def plan_campaign_send_times(session: Session, spec: CampaignSpec, recipient_ids: Sequence[str],
                             zones: Sequence[str], now: datetime, rng: np.random.Generator | None = None
                             ) -> list[SendTime]:
    """Send times for a run of ``spec``: its schedule, its exploration, and its staged test (if any:
    a random ``explore`` share is planned from now, the rest from now + ``wait``)."""
    rng = rng if rng is not None else np.random.default_rng(
        int.from_bytes(spec.name.encode()[:8], "big") ^ int(now.timestamp()))
    staged = spec.optimize.staged
    delayed = rng.random(len(recipient_ids)) >= staged.explore if staged is not None else None
    return plan_send_times(session, spec.schedule, recipient_ids, zones, now, exploration=spec.optimize.exploration,
                           rng=rng, delayed=delayed, delay=staged.wait if staged is not None else timedelta(0))


__all__ = ["SendTime", "allowed_minutes", "choose_send_times", "hour_preferences", "plan_campaign_send_times",
           "plan_send_times"]
