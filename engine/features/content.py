"""Columnar features of a content pool at one moment: what can be sent now, and how well it does.

Built at send time, so an item published minutes ago is a candidate and its first clicks count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlmodel import Session

from engine.spec.model import Content
from engine.spec.rules import Call, Column, Name, column_from_values, evaluate
from engine.store import queries
from engine.store.tables import ContentItem

# Smoothing of click rates toward the pool's overall rate, in pseudo-sends.
PRIOR_SENDS = 20.0


@dataclass(frozen=True)
class ItemTable:
    """The candidate items of a pool, as aligned numpy columns (one row per item)."""

    items: tuple[ContentItem, ...]
    ids: np.ndarray
    topics: np.ndarray
    topic_codes: np.ndarray
    topic_names: tuple[str, ...]
    age_hours: np.ndarray
    sends: np.ndarray
    clicks: np.ndarray
    popularity: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


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


def build_item_table(session: Session, content: Content, now: datetime) -> ItemTable:
    """The pool's items that pass ``content.where`` at ``now``, with smoothed click rates."""
    items = queries.pool_items(session, content.pool)
    age = np.array([(now - i.published_at).total_seconds() / 3600 for i in items])
    if content.where is not None and items:
        keep = evaluate(content.where, len(items), _ItemColumns(items, age))
        items = [i for i, k in zip(items, keep, strict=True) if k]
        age = age[keep]
    ids = np.array([i.id for i in items], dtype=object)
    counts = queries.item_event_counts(session, [i.id for i in items], ["sent", "click"])
    sends = np.array([counts.get((i.id, "sent"), 0) for i in items], dtype=float)
    clicks = np.array([counts.get((i.id, "click"), 0) for i in items], dtype=float)
    prior = (clicks.sum() + 1.0) / (sends.sum() + 20.0)  # 5% before any history
    topics = np.array([i.topic or "" for i in items], dtype=object)
    names, codes = np.unique(topics, return_inverse=True) if items else (np.array([]), np.array([], dtype=int))
    return ItemTable(
        items=tuple(items), ids=ids, topics=topics, topic_codes=codes.astype(int),
        topic_names=tuple(str(n) for n in names), age_hours=age, sends=sends, clicks=clicks,
        popularity=(clicks + PRIOR_SENDS * prior) / (np.maximum(sends, clicks) + PRIOR_SENDS),
    )
