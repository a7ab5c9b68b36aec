"""Per-recipient features at one moment, from the event log before it. No per-recipient loops.

Everything is computed from the events of the last :data:`HORIZON_DAYS` before ``cutoff``
(strictly before, so training features never see the outcome they predict):

- recency and frequency: messages, opens, clicks and conversions over 1, 7, 30 and 90 days, and
  days since the last open, click and conversion;
- engagement: smoothed click rate per impression and open rate per message, and engagement per
  channel (opens and clicks per message on that channel);
- per-topic counts (impressions, impressions in messages that were opened — an open or a click
  after the send, before the recipient's next message —, clicks, and items read outside any
  message: events with an item and no campaign, such as a page view), and which topics a
  categorical attribute names (an interest declared at sign-up), from which
  :mod:`engine.features.pairs` derives the affinity for a given item's topic;
- hour-of-week activity (opens, clicks and what they did outside any message, by local hour of
  the week), and the share of activity in the current local hour;
- tenure (days since the first event inside the horizon) and the encoded attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from engine.features.attributes import AttributeEncoding
from engine.features.events import CHANNELS, DAY, EventColumns, codes, own_doings

HORIZON_DAYS = 90
WINDOWS_DAYS = (1, 7, 30, 90)
COUNTED = ("sent", "open", "click", "conversion")
ENGAGED = ("open", "click")
HOURS_OF_WEEK = 168
RATE_PRIOR = 5.0  # pseudo-impressions pulling each recipient's rates toward the population's

BASE_NAMES = (
    *(f"{kind}_{days}d" for kind in COUNTED for days in WINDOWS_DAYS),
    "days_since_open", "days_since_click", "days_since_conversion",
    "click_rate", "open_rate", *(f"engagement_{c}" for c in CHANNELS), "activity_share_now", "tenure_days",
)


@dataclass(frozen=True)
class RecipientFeatures:
    """Features of ``len(values)`` recipients at ``cutoff`` (rows aligned with the caller's ids)."""

    names: tuple[str, ...]
    values: np.ndarray              # (recipients x features) float32
    topics: tuple[str, ...]         # the topic vocabulary of the two arrays below
    topic_impressions: np.ndarray   # (recipients x topics)
    topic_clicks: np.ndarray        # (recipients x topics)
    topic_opened: np.ndarray        # (recipients x topics) impressions in messages that were opened
    topic_views: np.ndarray         # (recipients x topics) items read outside any message
    topic_click_rate: np.ndarray    # (topics,) population click rate per topic
    declared_topics: np.ndarray     # (recipients x topics) a categorical attribute names the topic
    hour_of_week: np.ndarray        # (recipients x 168) activity by local hour of week
    item_ids: tuple[str, ...]       # the item vocabulary of the pair keys below
    sent_pairs: np.ndarray          # sorted recipient * len(item_ids) + item, of items sent before
    clicked_pairs: np.ndarray       # the same, of items clicked before
    opened_keys: np.ndarray         # recipient * len(item_ids) + item of each impression in an opened message
    click_keys: np.ndarray          # the same of each click on an item

    def __len__(self) -> int:
        return len(self.values)


def zone_offsets(zones: Sequence[str], at: datetime) -> np.ndarray:
    """Seconds east of UTC of each zone at ``at`` (one lookup per distinct zone)."""
    names, inverse = np.unique(np.asarray(zones, dtype=str), return_inverse=True)
    offsets = np.array([(at.astimezone(ZoneInfo(str(n))).utcoffset() or timedelta(0)).total_seconds()
                        for n in names])
    return np.asarray(offsets[inverse.reshape(-1)] if len(names) else np.zeros(0))


def event_offsets(zones: Sequence[str], recipient: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Seconds east of UTC at each event, in its recipient's zone on the event's day (so a
    daylight-saving change inside the horizon does not shift the hours before it)."""
    if len(ts) == 0:
        return np.zeros(0)
    names, zone_code = np.unique(np.asarray(zones, dtype=str), return_inverse=True)
    day = np.floor(ts / DAY).astype(np.int64)
    key = zone_code.reshape(-1)[recipient] * (day.max() - day.min() + 1) + (day - day.min())
    distinct, inverse = np.unique(key, return_inverse=True)
    span = day.max() - day.min() + 1
    offsets = np.array([
        (datetime.fromtimestamp(float((day.min() + k % span) * DAY + DAY / 2), UTC)
         .astimezone(ZoneInfo(str(names[k // span]))).utcoffset() or timedelta(0)).total_seconds()
        for k in distinct])
    return np.asarray(offsets[inverse.reshape(-1)])


def hour_of_week(epoch_seconds: np.ndarray) -> np.ndarray:
    """Local hour of the week (Monday 00:00 = 0) of local epoch seconds. 1970-01-01 was a Thursday."""
    hours = np.floor(epoch_seconds / 3600.0).astype(np.int64)
    return np.asarray((hours + 3 * 24) % HOURS_OF_WEEK)


def latest_sends(log: EventColumns, message_start: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """For each event of ``responses`` (a mask), the row of ``log`` of the latest message start
    (a mask too) of the same recipient at or before it, or -1."""
    starts = np.flatnonzero(message_start)
    rows = np.flatnonzero(responses)
    if len(starts) == 0 or len(rows) == 0:
        return np.full(len(rows), -1, dtype=np.int64)
    origin = float(log.ts.min())

    def key(chosen: np.ndarray) -> np.ndarray:
        seconds = np.floor(log.ts[chosen] - origin).astype(np.int64)
        return np.asarray((log.recipient[chosen].astype(np.int64) << 32) + seconds)

    order = np.argsort(key(starts), kind="stable")
    position = np.searchsorted(key(starts)[order], key(rows), side="right") - 1
    candidate = starts[order][position.clip(0)]
    same = (position >= 0) & (log.recipient[candidate] == log.recipient[rows])
    return np.asarray(np.where(same, candidate, -1))


def opened_messages(log: EventColumns, message_start: np.ndarray, engaged: np.ndarray) -> np.ndarray:
    """The message codes of ``log`` followed by an open or a click: each such event goes to the
    latest message its recipient was sent at or before it."""
    sends = latest_sends(log, message_start, engaged)
    return np.unique(log.message[sends[sends >= 0]])


def recipient_features(events: EventColumns, zones: Sequence[str], attributes: Sequence[Mapping[str, Any]],
                       encoding: AttributeEncoding, cutoff: datetime) -> RecipientFeatures:
    """Features of the recipients of ``events.recipient_ids`` at ``cutoff``.

    :param zones: each recipient's IANA time zone, aligned with ``events.recipient_ids``.
    :param attributes: each recipient's attributes, aligned the same way.
    """
    n = len(events.recipient_ids)
    end = cutoff.timestamp()
    log = events.select((events.ts < end) & (events.ts >= end - HORIZON_DAYS * DAY) & (events.recipient >= 0))
    who = log.recipient
    age_days = (end - log.ts) / DAY
    columns: list[np.ndarray] = []
    message_start = log.is_kind("sent") & (log.position <= 0)
    for kind in COUNTED:
        mask = message_start if kind == "sent" else log.is_kind(kind)
        for days in WINDOWS_DAYS:
            columns.append(np.bincount(who[mask & (age_days < days)], minlength=n).astype(np.float64))
    for kind in ("open", "click", "conversion"):
        last = np.full(n, -np.inf)
        mask = log.is_kind(kind)
        np.maximum.at(last, who[mask], log.ts[mask])
        columns.append(np.where(np.isfinite(last), (end - last) / DAY, np.nan))

    impressions = log.is_kind("sent")
    clicks_mask = log.is_kind("click")
    n_impressions = np.bincount(who[impressions], minlength=n).astype(np.float64)
    n_clicks = np.bincount(who[clicks_mask], minlength=n).astype(np.float64)
    n_messages = columns[COUNTED.index("sent") * len(WINDOWS_DAYS) + len(WINDOWS_DAYS) - 1]
    n_opens = columns[COUNTED.index("open") * len(WINDOWS_DAYS) + len(WINDOWS_DAYS) - 1]
    population_ctr = (n_clicks.sum() + 1.0) / (n_impressions.sum() + 20.0)
    population_open = (n_opens.sum() + 1.0) / (n_messages.sum() + 5.0)
    columns.append((n_clicks + RATE_PRIOR * population_ctr) / (n_impressions + RATE_PRIOR))
    columns.append((n_opens + RATE_PRIOR * population_open) / (n_messages + RATE_PRIOR))

    engaged = log.is_kind(*ENGAGED)
    own = own_doings(log)  # outside any message: activity, and with an item a read
    for code in range(len(CHANNELS)):
        on_channel = log.channel == code
        messages = np.bincount(who[message_start & on_channel], minlength=n).astype(np.float64)
        responses = np.bincount(who[engaged & on_channel], minlength=n).astype(np.float64)
        prior = (responses.sum() + 1.0) / (messages.sum() + 5.0)
        columns.append((responses + RATE_PRIOR * prior) / (messages + RATE_PRIOR))

    offsets = zone_offsets(zones, cutoff) if n else np.zeros(0)
    week = np.zeros((n, HOURS_OF_WEEK))
    active = engaged | own
    local = log.ts[active] + event_offsets(zones, who[active], log.ts[active])
    np.add.at(week, (who[active], hour_of_week(local)), 1.0)
    by_hour = week.reshape(n, 7, 24).sum(axis=1)
    now_hour = (np.floor((end + offsets) / 3600.0).astype(np.int64) % 24) if n else np.zeros(0, dtype=np.int64)
    population_hours = by_hour.sum(axis=0) + 1.0
    population_hours /= population_hours.sum()
    share = (by_hour[np.arange(n), now_hour] + 2.0 * population_hours[now_hour]) / (by_hour.sum(axis=1) + 2.0)
    columns.append(share)
    first = np.full(n, np.inf)
    np.minimum.at(first, who, log.ts)
    columns.append(np.where(np.isfinite(first), (end - first) / DAY, np.nan))

    topic_impressions = np.zeros((n, len(events.topics)))
    topic_clicks = np.zeros((n, len(events.topics)))
    topic_opened = np.zeros((n, len(events.topics)))
    with_topic = log.topic >= 0
    np.add.at(topic_impressions, (who[impressions & with_topic], log.topic[impressions & with_topic]), 1.0)
    in_opened = impressions & np.isin(log.message, opened_messages(log, message_start, engaged))
    opened = in_opened & with_topic
    np.add.at(topic_opened, (who[opened], log.topic[opened]), 1.0)
    np.add.at(topic_clicks, (who[clicks_mask & with_topic], log.topic[clicks_mask & with_topic]), 1.0)
    topic_views = np.zeros((n, len(events.topics)))
    viewed = own & with_topic
    np.add.at(topic_views, (who[viewed], log.topic[viewed]), 1.0)
    topic_rate = (topic_clicks.sum(axis=0) + population_ctr * 20.0) / (topic_impressions.sum(axis=0) + 20.0)

    declared = np.zeros((n, len(events.topics)), dtype=bool)
    lowered = [t.lower() for t in events.topics]
    for attribute in encoding.attributes:
        if attribute.kind == "category":
            texts = [str(row.get(attribute.name, "")).lower() for row in attributes]
            named = codes(texts, lowered)
            declared[np.flatnonzero(named >= 0), named[named >= 0]] = True

    n_items = max(len(events.item_ids), 1)
    with_item = log.item >= 0
    sent_pairs = np.unique(who[impressions & with_item] * n_items + log.item[impressions & with_item])
    clicked_pairs = np.unique(who[clicks_mask & with_item] * n_items + log.item[clicks_mask & with_item])
    opened_item = in_opened & with_item
    opened_keys = who[opened_item] * n_items + log.item[opened_item]
    click_keys = who[clicks_mask & with_item] * n_items + log.item[clicks_mask & with_item]

    values = np.column_stack([*columns, encoding.encode(attributes)]) if n else np.zeros(
        (0, len(BASE_NAMES) + len(encoding.attributes)))
    return RecipientFeatures(
        names=BASE_NAMES + tuple(f"recipient.{a}" for a in encoding.names),
        values=values.astype(np.float32), topics=events.topics, topic_impressions=topic_impressions,
        topic_clicks=topic_clicks, topic_opened=topic_opened, topic_views=topic_views, topic_click_rate=topic_rate,
        declared_topics=declared, hour_of_week=week,
        item_ids=events.item_ids, sent_pairs=sent_pairs, clicked_pairs=clicked_pairs, opened_keys=opened_keys,
        click_keys=click_keys,
    )
