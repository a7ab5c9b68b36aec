"""Training data for the ranker, from the event log: impressions, their labels, their features.

Every logged impression of a pool item (a `sent` event with an ``item_id``, Kairos's own or
imported history) is a row. Its label comes from the campaign goal, credited by last touch
inside ``goal_window``: 0 nothing, 1 the first rung of the goal's ladder, 2 the second (for a
click goal: 1 click, 2 conversion; for a conversion or custom goal: 1 click, 2 the goal event;
for an open goal: 1 open, 2 click). Events naming an item are credited to that recipient's
latest impression of that item; events naming none (an open, a visit, a purchase on the site)
to every item of the recipient's latest message.

Features are computed as of the start of the day of each send, from events strictly before it,
so no row sees its own outcome. Rows are grouped by message (the LambdaRank query groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.features.attributes import AttributeEncoding, learn_encoding
from engine.features.content import counts_from_events, item_table
from engine.features.events import DAY, EventColumns, codes
from engine.features.pairs import FeatureSchema, pair_inputs, pair_matrix
from engine.features.recipients import HORIZON_DAYS, RecipientFeatures, recipient_features
from engine.features.segments import fit_segments, with_item_rates
from engine.learn.attribution import last_touch
from engine.learn.ranker import ItemScorer, PopularityScorer
from engine.store.tables import ContentItem


@dataclass(frozen=True)
class Goal:
    """What counts as success: the goal event, its label ladder and its attribution window."""

    event: str
    window: timedelta
    ladder: tuple[str, str]

    @classmethod
    def of(cls, goal_event: str, window: timedelta) -> Goal:
        if goal_event == "click":
            ladder = ("click", "conversion")
        elif goal_event == "open":
            ladder = ("open", "click")
        else:
            ladder = ("click", goal_event)
        return cls(goal_event, window, ladder)

    @property
    def level(self) -> int:
        """The label at which the goal itself is reached."""
        return self.ladder.index(self.event) + 1


@dataclass(frozen=True)
class Impressions:
    """The labelled impressions, sorted by message, and where their features come from."""

    events: EventColumns
    items: tuple[ContentItem, ...]
    zones: tuple[str, ...]
    attributes: tuple[Mapping[str, Any], ...]
    recipient: np.ndarray   # index into events.recipient_ids
    item: np.ndarray        # index into items
    message: np.ndarray     # group code (rows of a message are contiguous)
    ts: np.ndarray
    position: np.ndarray
    propensity: np.ndarray
    labels: np.ndarray
    goal: Goal

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def positive(self) -> np.ndarray:
        return np.asarray(self.labels >= self.goal.level)

    def group_sizes(self, rows: np.ndarray) -> np.ndarray:
        """Sizes of the consecutive message groups among ``rows`` (which must be sorted)."""
        messages = self.message[rows]
        starts = np.r_[0, np.flatnonzero(np.diff(messages)) + 1] if len(rows) else np.zeros(0, dtype=int)
        return np.diff(np.r_[starts, len(rows)])

    def learn_schema(self, rows: np.ndarray | None = None, seed: int = 0) -> FeatureSchema:
        """The feature columns learned from the recipients and items of ``rows`` (default: all),
        with taste segments fit on the log up to the end of the last of their send days (so the
        segments never see the outcomes of later rows, such as a validation period's)."""
        rows = np.arange(len(self)) if rows is None else rows
        seen = np.unique(self.recipient[rows])
        encoding = learn_encoding([self.attributes[i] for i in seen])
        schema = FeatureSchema(encoding, learn_encoding([i.attributes for i in self.items]),
                               tuple(sorted({i.topic or "" for i in self.items})))
        if len(rows) == 0:
            return schema
        cutoff = datetime.fromtimestamp(float((np.floor(self.ts[rows].max() / DAY) + 1) * DAY), UTC)
        recipients = recipient_features(self.events, self.zones, self.attributes, encoding, cutoff)
        names = list(recipients.names)
        categorical = [a for a in encoding.attributes if a.kind == "category"]
        codes_ = np.column_stack([recipients.values[seen, names.index(f"recipient.{a.name}")] for a in categorical]
                                 ) if categorical else np.zeros((len(seen), 0))
        segments = fit_segments(recipients.topic_opened[seen], recipients.topic_clicks[seen], recipients.topics,
                                codes_.astype(np.float64), [a.name for a in categorical],
                                [len(a.categories) for a in categorical], np.random.default_rng(seed),
                                recipients.topic_views[seen])
        if segments is not None:
            posterior = segments.posterior(recipients.topic_opened[seen], recipients.topic_clicks[seen],
                                           codes_.astype(np.float64), recipients.topic_views[seen])
            segments = with_item_rates(segments, posterior, _seen_pairs(recipients.opened_keys, seen, recipients),
                                       _seen_pairs(recipients.click_keys, seen, recipients), recipients.item_ids,
                                       _item_topics(self.events))
        return FeatureSchema(schema.recipient_encoding, schema.item_encoding, schema.topics, segments)

    def matrix(self, schema: FeatureSchema, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The features of ``rows`` in ``schema``'s columns, and the popularity fallback's scores."""
        matrix = np.empty((len(rows), len(schema.names)), dtype=np.float32)
        baseline = np.empty(len(rows))
        item_attributes = [i.attributes for i in self.items]
        days = np.floor(self.ts[rows] / DAY)
        for day in np.unique(days):
            in_day = np.flatnonzero(days == day)
            chosen = rows[in_day]
            cutoff = datetime.fromtimestamp(float(day * DAY), UTC)
            recipients = recipient_features(self.events, self.zones, self.attributes, schema.recipient_encoding,
                                            cutoff)
            counts = counts_from_events(self.events, [i.id for i in self.items], cutoff.timestamp(),
                                        self.goal.event)
            table = item_table(self.items, counts, cutoff)
            inputs = pair_inputs(schema, recipients, table, item_attributes)
            matrix[in_day] = pair_matrix(inputs, self.recipient[chosen], self.item[chosen])
            baseline[in_day] = PopularityScorer().score_pairs(inputs, self.recipient[chosen], self.item[chosen])
        return matrix, baseline


    def score_every_item(self, scorer: ItemScorer, rows: np.ndarray) -> np.ndarray:
        """(rows x items) ``scorer``'s score of every pool item for each row's recipient, with
        features as of that row's send day (what the scorer would have seen then)."""
        schema = scorer.schema or FeatureSchema(AttributeEncoding(), AttributeEncoding(),
                                                tuple(sorted({i.topic or "" for i in self.items})))
        scores = np.empty((len(rows), len(self.items)))
        item_attributes = [i.attributes for i in self.items]
        days = np.floor(self.ts[rows] / DAY)
        for day in np.unique(days):
            in_day = np.flatnonzero(days == day)
            cutoff = datetime.fromtimestamp(float(day * DAY), UTC)
            recipients = recipient_features(self.events, self.zones, self.attributes, schema.recipient_encoding,
                                            cutoff)
            counts = counts_from_events(self.events, [i.id for i in self.items], cutoff.timestamp(),
                                        self.goal.event)
            inputs = pair_inputs(schema, recipients, item_table(self.items, counts, cutoff), item_attributes)
            who = np.repeat(self.recipient[rows[in_day]], len(self.items))
            what = np.tile(np.arange(len(self.items)), len(in_day))
            scores[in_day] = scorer.score_pairs(inputs, who, what).reshape(len(in_day), len(self.items))
        return scores


def _seen_pairs(keys: np.ndarray, seen: np.ndarray, recipients: RecipientFeatures) -> tuple[np.ndarray, np.ndarray]:
    """(row of ``seen``, item) of each pair key (recipient * items + item) whose recipient is in
    ``seen`` (sorted recipient indices)."""
    n_items = max(len(recipients.item_ids), 1)
    who, item = keys // n_items, keys % n_items
    row = np.searchsorted(seen, who).clip(0, max(len(seen) - 1, 0))
    inside = (seen[row] == who) if len(seen) else np.zeros(len(keys), dtype=bool)
    return row[inside], item[inside]


def _item_topics(events: EventColumns) -> list[str | None]:
    """The topic of each item of ``events.item_ids``, as its events name it (None: none does)."""
    topic = np.full(len(events.item_ids), -1, dtype=np.int64)
    named = (events.item >= 0) & (events.topic >= 0)
    topic[events.item[named]] = events.topic[named]
    return [events.topics[t] if t >= 0 else None for t in topic]


def label_impressions(events: EventColumns, impression_rows: np.ndarray, goal: Goal) -> np.ndarray:
    """The label (0, 1, 2) of each impression, by last-touch attribution inside the goal window."""
    labels = np.zeros(len(impression_rows), dtype=np.int64)
    n_items = max(len(events.item_ids), 1)
    recipient = events.recipient[impression_rows]
    pair_key = recipient * n_items + events.item[impression_rows]
    ts = events.ts[impression_rows]
    message = events.message[impression_rows]
    window = goal.window.total_seconds()
    # One touch per message for events that name no item: the message's first impression.
    _, first_of_message = np.unique(message, return_index=True)
    for gain, kind in enumerate(goal.ladder, start=1):
        responses = np.flatnonzero(events.is_kind(kind) & (events.recipient >= 0))
        if len(responses) == 0:
            continue
        named = events.item[responses] >= 0
        on_item = responses[named]
        credited = last_touch(pair_key, ts, events.recipient[on_item] * n_items + events.item[on_item],
                              events.ts[on_item], window)
        hit = credited[credited >= 0]
        labels[hit] = np.maximum(labels[hit], gain)
        on_message = responses[~named]
        credited = last_touch(recipient[first_of_message], ts[first_of_message], events.recipient[on_message],
                              events.ts[on_message], window)
        messages = message[first_of_message[credited[credited >= 0]]]
        reached = np.isin(message, messages)
        labels[reached] = np.maximum(labels[reached], gain)
    return labels


def collect_impressions(events: EventColumns, items: Sequence[ContentItem], zones: Sequence[str],
                        attributes: Sequence[Mapping[str, Any]], goal: Goal, since: datetime,
                        until: datetime, include: np.ndarray | None = None) -> Impressions:
    """The labelled impressions of ``items`` sent in [since, until).

    :param events: every event from ``since - HORIZON_DAYS`` to ``until`` (features need the
        history before the first impression), recipients aligned with ``zones`` and ``attributes``.
    :param include: optionally, a boolean mask over ``events.recipient_ids`` of who may be used.
    """
    item_index = codes(list(events.item_ids), [i.id for i in items])
    event_item = np.where(events.item >= 0, item_index[events.item.clip(0)] if len(item_index) else -1, -1)
    mask = (events.is_kind("sent") & (event_item >= 0) & (events.recipient >= 0)
            & (events.ts >= since.timestamp()) & (events.ts < until.timestamp()))
    if include is not None:
        mask &= include[events.recipient.clip(0)]
    rows = np.flatnonzero(mask)
    labels = label_impressions(events, rows, goal)
    order = np.lexsort((events.position[rows], events.message[rows]))
    rows, labels = rows[order], labels[order]
    return Impressions(
        events=events, items=tuple(items), zones=tuple(zones), attributes=tuple(attributes),
        recipient=events.recipient[rows], item=event_item[rows], message=events.message[rows], ts=events.ts[rows],
        position=events.position[rows], propensity=events.propensity[rows], labels=labels, goal=goal,
    )


def history_start(since: datetime) -> datetime:
    """How far back events are needed to compute features of impressions from ``since``."""
    return since - timedelta(days=HORIZON_DAYS)


__all__ = ["AttributeEncoding", "Goal", "Impressions", "collect_impressions", "history_start",
           "label_impressions"]
