"""Columnar features of a content pool at one moment: what can be sent now, and how well it does.

Built at send time, so an item published minutes ago is a candidate and its first clicks count.
The same definitions are computed from the store's grouped counts (sending) and from
:class:`~engine.features.events.EventColumns` (training, as of each past send), so a model sees
the same features when it is trained and when it is used:

- popularity: click rate per impression over 90 days, smoothed toward the pool's rate;
- goal rate: goal events that name the item per impression, smoothed the same way;
- trend: the last 7 days' click rate against the 90-day rate (above 1: rising);
- freshness: age in hours, capped at :data:`FRESHNESS_CAP_HOURS` (past a week an item is just
  old; uncapped, the exact age would let a model memorize items by it); topic; attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.features.events import DAY, EventColumns, codes
from engine.spec.model import Content
from engine.spec.rules import Call, Column, Name, column_from_values, evaluate
from engine.store import queries
from engine.store.tables import ContentItem

# Smoothing of click rates toward the pool's overall rate, in pseudo-impressions.
PRIOR_SENDS = 20.0
LONG_DAYS = 90
RECENT_DAYS = 7
FRESHNESS_CAP_HOURS = 168.0
# Raw counts are left out on purpose: they grow week by week and tell items apart, so a model
# learns them as item identities that no longer hold a week later; the rates carry their signal.
ITEM_NAMES = ("item_popularity", "item_goal_rate", "item_trend", "item_age_hours")


@dataclass(frozen=True)
class ItemCounts:
    """Impressions, clicks and goal events per item over the long and the recent window."""

    impressions: np.ndarray
    clicks: np.ndarray
    goals: np.ndarray
    recent_impressions: np.ndarray
    recent_clicks: np.ndarray

    @classmethod
    def empty(cls, n: int) -> ItemCounts:
        return cls(*(np.zeros(n) for _ in range(5)))


@dataclass(frozen=True)
class ItemTable:
    """The candidate items of a pool, as aligned numpy columns (one row per item)."""

    items: tuple[ContentItem, ...]
    ids: np.ndarray
    topics: np.ndarray
    topic_codes: np.ndarray
    topic_names: tuple[str, ...]
    age_hours: np.ndarray
    counts: ItemCounts
    popularity: np.ndarray
    goal_rate: np.ndarray
    trend: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sends(self) -> np.ndarray:
        return self.counts.impressions

    @property
    def clicks(self) -> np.ndarray:
        return self.counts.clicks

    def values(self) -> np.ndarray:
        """(items x len(ITEM_NAMES)) float32, in the order of :data:`ITEM_NAMES`."""
        return np.column_stack([self.popularity, self.goal_rate, self.trend,
                                np.clip(self.age_hours, 0.0, FRESHNESS_CAP_HOURS)]).astype(np.float32)


class _ItemColumns:
    def __init__(self, items: list[ContentItem], age_hours: np.ndarray) -> None:
        self.items = items
        self.age_hours = age_hours

    def __call__(self, node: Name | Call) -> Column:
        assert isinstance(node, Name)  # content rules take no functions (the parser refuses them)
        if node.path[0] == "age_hours":
            return Column(self.age_hours, np.ones(len(self.items), dtype=bool))
        if node.path[0] == "attributes":
            return column_from_values([i.attributes.get(node.path[1]) for i in self.items])
        return column_from_values([getattr(i, node.path[0]) for i in self.items])


def candidate_items(session: Session, content: Content, now: datetime) -> list[ContentItem]:
    """The pool's items that pass ``content.where`` at ``now``."""
    items = queries.pool_items(session, content.pool)
    if content.where is not None and items:
        age = np.array([(now - i.published_at).total_seconds() / 3600 for i in items])
        keep = evaluate(content.where, len(items), _ItemColumns(items, age))
        items = [i for i, k in zip(items, keep, strict=True) if k]
    return items


def item_table(items: Sequence[ContentItem], counts: ItemCounts, now: datetime) -> ItemTable:
    """The table of ``items`` at ``now`` with rates derived from ``counts``."""
    impressions = np.maximum(counts.impressions, counts.clicks)
    prior = (counts.clicks.sum() + 1.0) / (impressions.sum() + 20.0)  # 5% before any history
    popularity = (counts.clicks + PRIOR_SENDS * prior) / (impressions + PRIOR_SENDS)
    goal_prior = (counts.goals.sum() + 1.0) / (impressions.sum() + 20.0)
    goal_rate = (counts.goals + PRIOR_SENDS * goal_prior) / (impressions + PRIOR_SENDS)
    recent = (counts.recent_clicks + PRIOR_SENDS * popularity) / (
        np.maximum(counts.recent_impressions, counts.recent_clicks) + PRIOR_SENDS)
    topics = np.array([i.topic or "" for i in items], dtype=object)
    names, topic_codes = np.unique(topics.astype(str), return_inverse=True) if len(items) else (
        np.array([], dtype=str), np.array([], dtype=int))
    return ItemTable(
        items=tuple(items), ids=np.array([i.id for i in items], dtype=object), topics=topics,
        topic_codes=topic_codes.reshape(-1).astype(int), topic_names=tuple(str(n) for n in names),
        age_hours=np.array([(now - i.published_at).total_seconds() / 3600 for i in items]),
        counts=counts, popularity=popularity, goal_rate=goal_rate, trend=recent / popularity,
    )


def build_item_table(session: Session, content: Content, now: datetime, goal_event: str = "click") -> ItemTable:
    """The pool's candidate items at ``now``, with their rates from the store's counts."""
    items = candidate_items(session, content, now)
    ids = [i.id for i in items]
    types = ["sent", "click", goal_event]
    long, recent = queries.item_event_counts(session, ids, types, now - timedelta(days=LONG_DAYS),
                                             now - timedelta(days=RECENT_DAYS), now)

    def column(counts: dict[tuple[str, str], int], kind: str) -> np.ndarray:
        return np.array([counts.get((i, kind), 0) for i in ids], dtype=float)

    counts = ItemCounts(column(long, "sent"), column(long, "click"),
                        column(long, goal_event) if goal_event != "click" else np.zeros(len(ids)),
                        column(recent, "sent"), column(recent, "click"))
    return item_table(items, counts, now)


def counts_from_events(events: EventColumns, item_ids: Sequence[str], cutoff: float, goal_event: str) -> ItemCounts:
    """The :class:`ItemCounts` of ``item_ids`` from events before ``cutoff`` (epoch seconds)."""
    index = codes(list(events.item_ids), list(item_ids))
    n = len(item_ids)
    item = np.where(events.item >= 0, index[events.item.clip(0)] if len(index) else -1, -1)
    age = cutoff - events.ts
    usable = (item >= 0) & (age > 0) & (age <= LONG_DAYS * DAY)
    recent = usable & (age <= RECENT_DAYS * DAY)

    def count(kind: str, mask: np.ndarray) -> np.ndarray:
        chosen = mask & events.is_kind(kind)
        return np.bincount(item[chosen], minlength=n).astype(float)

    goals = count(goal_event, usable) if goal_event != "click" else np.zeros(n)
    return ItemCounts(count("sent", usable), count("click", usable), goals, count("sent", recent),
                      count("click", recent))
