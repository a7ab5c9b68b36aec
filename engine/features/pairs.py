"""The (recipient x item) feature matrix a ranker scores: recipient, item and cross features.

A :class:`FeatureSchema` fixes the columns (names, which are categorical, how attributes and
topics are encoded). It is learned when a model is trained and stored inside the model, so the
matrix built at send time has exactly the columns the model was trained on.

Cross features, per pair: the recipient's smoothed click rate on the item's topic, that rate
against the recipient's own overall rate, the topic's share of the recipient's clicks, how often
the topic was shown to them, whether one of their attributes names the topic, whether this very
item was already sent to or clicked by them, and the cold-start score (log popularity plus log
topic-share lift; trees find such products hard to build from their parts). When the schema
carries taste segments (:mod:`engine.features.segments`), three more: the recipient's expected
click rate on the item's topic from their segment posterior, that rate against the topic's
population rate, and log popularity plus the log of that lift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.features.attributes import AttributeEncoding
from engine.features.content import ITEM_NAMES, ItemTable
from engine.features.events import codes
from engine.features.recipients import BASE_NAMES, RecipientFeatures
from engine.features.segments import TasteSegments

CROSS_NAMES = ("topic_affinity", "topic_affinity_lift", "topic_click_share", "topic_impressions",
               "topic_declared", "sent_before", "clicked_before", "prior_score")
SEGMENT_NAMES = ("segment_affinity", "segment_lift", "segment_score")
AFFINITY_PRIOR = 3.0  # pseudo-impressions at the topic's population click rate
SHARE_PRIOR = 2.0     # pseudo-clicks spread as everyone's clicks are


@dataclass(frozen=True)
class FeatureSchema:
    """The columns of the pair matrix."""

    recipient_encoding: AttributeEncoding
    item_encoding: AttributeEncoding
    topics: tuple[str, ...]
    segments: TasteSegments | None = field(default=None, compare=False)

    @property
    def cross_names(self) -> tuple[str, ...]:
        return (*CROSS_NAMES, *SEGMENT_NAMES) if self.segments is not None else CROSS_NAMES

    @property
    def names(self) -> tuple[str, ...]:
        return (*BASE_NAMES, *(f"recipient.{a}" for a in self.recipient_encoding.names), *ITEM_NAMES,
                "item_topic", *(f"item.{a}" for a in self.item_encoding.names), *self.cross_names)

    @property
    def categorical(self) -> tuple[str, ...]:
        return (*(f"recipient.{a}" for a in self.recipient_encoding.categorical), "item_topic",
                *(f"item.{a}" for a in self.item_encoding.categorical))

    def to_json(self) -> dict[str, Any]:
        data = {"recipient_attributes": self.recipient_encoding.to_json(),
                "item_attributes": self.item_encoding.to_json(), "topics": list(self.topics),
                "features": list(self.names)}
        if self.segments is not None:
            data["segments"] = self.segments.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSchema:
        segments = TasteSegments.from_json(data["segments"]) if data.get("segments") else None
        schema = cls(AttributeEncoding.from_json(data["recipient_attributes"]),
                     AttributeEncoding.from_json(data["item_attributes"]), tuple(data["topics"]), segments)
        if list(schema.names) != list(data.get("features", schema.names)):
            raise ValueError("the stored feature names do not match this version's features")
        return schema


@dataclass(frozen=True)
class PairInputs:
    """Everything a pair matrix is gathered from, precomputed per recipient and per item."""

    recipient_values: np.ndarray   # (recipients x recipient features)
    item_values: np.ndarray        # (items x item features, topic and attributes included)
    affinity: np.ndarray           # (recipients x item topics + 1): last column for unknown topics
    lift: np.ndarray
    share: np.ndarray
    share_lift: np.ndarray         # share against the topic's share of everyone's clicks
    shown: np.ndarray
    declared: np.ndarray
    item_topic: np.ndarray         # (items,) column into the four arrays above
    item_in_log: np.ndarray        # (items,) index into the recipient features' item vocabulary, or -1
    n_log_items: int
    sent_pairs: np.ndarray
    clicked_pairs: np.ndarray
    segment_rate: np.ndarray | None = None   # (recipients x item topics + 1) from the segment posterior
    segment_lift: np.ndarray | None = None
    segment_posterior: np.ndarray | None = None   # (recipients x segments)
    segment_topic_rate: np.ndarray | None = None  # (segments x item topics + 1), NaN where not fit
    segment_item_rate: np.ndarray | None = None   # (segments x items) where the segments rate items

    def segment_item_rates(self) -> np.ndarray | None:
        """(segments x items) each segment's click rate on each item: its own where the segments
        rate it (:func:`engine.features.segments.with_item_rates`), else its topic's (NaN where
        the segments were not fit on that); None without segments."""
        if self.segment_topic_rate is None:
            return None
        by_topic = np.asarray(self.segment_topic_rate[:, self.item_topic])
        if self.segment_item_rate is None:
            return by_topic
        return np.asarray(np.where(np.isfinite(self.segment_item_rate), self.segment_item_rate, by_topic))

    @property
    def width(self) -> int:
        segments = len(SEGMENT_NAMES) if self.segment_rate is not None else 0
        return int(self.recipient_values.shape[1] + self.item_values.shape[1] + len(CROSS_NAMES) + segments)


def pair_inputs(schema: FeatureSchema, recipients: RecipientFeatures, items: ItemTable,
                item_attributes: Sequence[Mapping[str, Any]]) -> PairInputs:
    """Precompute the per-recipient and per-item parts of the matrix (cheap: no pairs yet)."""
    schema_topic = codes(list(items.topic_names), list(schema.topics)).astype(np.float32)
    item_topic_code = np.where(schema_topic >= 0, schema_topic, np.nan)[items.topic_codes]
    item_values = np.column_stack([items.values(), item_topic_code, schema.item_encoding.encode(item_attributes)])

    clicks, impressions = recipients.topic_clicks, recipients.topic_impressions
    rate = recipients.topic_click_rate
    overall = recipients.values[:, BASE_NAMES.index("click_rate")].astype(np.float64)[:, None]
    total_clicks = clicks.sum(axis=1, keepdims=True)
    population_share = (clicks.sum(axis=0) + 1.0) / (clicks.sum() + len(rate))
    affinity = (clicks + AFFINITY_PRIOR * rate[None, :]) / (impressions + AFFINITY_PRIOR)
    share = (clicks + SHARE_PRIOR * population_share[None, :]) / (total_clicks + SHARE_PRIOR)
    # The extra last column stands for topics the log has never seen: no evidence either way.
    n = len(clicks)
    affinity = np.hstack([affinity, overall])
    share_lift = np.hstack([share / population_share[None, :], np.ones((n, 1))])
    share = np.hstack([share, 1.0 / (total_clicks + 1.0) / max(len(rate), 1)])
    shown = np.hstack([impressions, np.zeros((n, 1))])
    declared = np.hstack([recipients.declared_topics, np.zeros((n, 1), dtype=bool)])
    in_log_topic = codes(list(items.topic_names), list(recipients.topics))
    item_topic = np.where(in_log_topic >= 0, in_log_topic, len(rate))[items.topic_codes]
    segment_rate = segment_lift = posterior = topic_rate = item_rate = None
    if schema.segments is not None:
        segment_rate, segment_lift, posterior, topic_rate = segment_inputs(schema.segments, recipients)
        if schema.segments.item_rate is not None:
            rated = codes(list(items.ids), list(schema.segments.item_ids))
            item_rate = np.where(rated[None, :] >= 0, schema.segments.item_rate[:, rated.clip(0)], np.nan)
    return PairInputs(
        recipient_values=recipients.values, item_values=item_values.astype(np.float32), affinity=affinity,
        lift=affinity / np.maximum(overall, 1e-6), share=share, share_lift=share_lift, shown=shown,
        declared=declared, item_topic=item_topic, item_in_log=codes(list(items.ids), list(recipients.item_ids)),
        n_log_items=max(len(recipients.item_ids), 1), sent_pairs=recipients.sent_pairs,
        clicked_pairs=recipients.clicked_pairs, segment_rate=segment_rate, segment_lift=segment_lift,
        segment_posterior=posterior, segment_topic_rate=topic_rate, segment_item_rate=item_rate,
    )


def segment_inputs(segments: TasteSegments, recipients: RecipientFeatures
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(recipients x log topics + 1) expected click rate per topic from the segment posterior, and
    its lift over the topic's population rate (NaN for topics the segments were not fit on); the
    posterior itself (recipients x segments), and each segment's rate per log topic (segments x
    log topics + 1, NaN likewise)."""
    n = len(recipients)
    column = codes(list(segments.topics), list(recipients.topics))
    impressions = np.zeros((n, len(segments.topics)))
    clicks = np.zeros((n, len(segments.topics)))
    views = np.zeros((n, len(segments.topics)))
    present = np.flatnonzero(column >= 0)
    impressions[:, present] = recipients.topic_opened[:, column[present]]
    clicks[:, present] = recipients.topic_clicks[:, column[present]]
    views[:, present] = recipients.topic_views[:, column[present]]
    names = list(recipients.names)
    attribute_codes = np.column_stack(
        [recipients.values[:, names.index(f"recipient.{a}")].astype(np.float64) if f"recipient.{a}" in names
         else np.full(n, np.nan) for a in segments.attributes]) if segments.attributes else np.zeros((n, 0))
    posterior = segments.posterior(impressions, clicks, attribute_codes, views)
    rates = posterior @ segments.topic_rate
    lifts = rates / segments.population_rates()[None, :]
    # Into the recipient features' topic vocabulary, plus the column for unknown topics.
    back = codes(list(recipients.topics), list(segments.topics))
    rate = np.full((n, len(recipients.topics) + 1), np.nan)
    lift = np.full_like(rate, np.nan)
    by_segment = np.full((len(segments), len(recipients.topics) + 1), np.nan)
    known = np.flatnonzero(back >= 0)
    rate[:, known] = rates[:, back[known]]
    lift[:, known] = lifts[:, back[known]]
    by_segment[:, known] = segments.topic_rate[:, back[known]]
    return rate, lift, posterior, by_segment


def _member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(len(keys), dtype=bool)
    position = np.searchsorted(sorted_set, keys).clip(0, len(sorted_set) - 1)
    return np.asarray(sorted_set[position] == keys)


def pair_matrix(inputs: PairInputs, recipient_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
    """(pairs x features) float32 for the pairs (recipient_index[k], item_index[k])."""
    r_width = inputs.recipient_values.shape[1]
    i_width = inputs.item_values.shape[1]
    matrix = np.empty((len(recipient_index), inputs.width), dtype=np.float32)
    matrix[:, :r_width] = inputs.recipient_values[recipient_index]
    matrix[:, r_width:r_width + i_width] = inputs.item_values[item_index]
    topic = inputs.item_topic[item_index]
    cross = r_width + i_width
    matrix[:, cross] = inputs.affinity[recipient_index, topic]
    matrix[:, cross + 1] = inputs.lift[recipient_index, topic]
    matrix[:, cross + 2] = inputs.share[recipient_index, topic]
    matrix[:, cross + 3] = inputs.shown[recipient_index, topic]
    matrix[:, cross + 4] = inputs.declared[recipient_index, topic]
    logged = inputs.item_in_log[item_index]
    keys = np.where(logged >= 0, recipient_index * inputs.n_log_items + logged, -1)
    matrix[:, cross + 5] = _member(keys, inputs.sent_pairs)
    matrix[:, cross + 6] = _member(keys, inputs.clicked_pairs)
    log_popularity = np.log(inputs.item_values[item_index, 0].astype(np.float64))
    matrix[:, cross + 7] = log_popularity + np.log(inputs.share_lift[recipient_index, topic])
    if inputs.segment_rate is not None and inputs.segment_lift is not None:
        lift = inputs.segment_lift[recipient_index, topic]
        matrix[:, cross + 8] = inputs.segment_rate[recipient_index, topic]
        matrix[:, cross + 9] = lift
        matrix[:, cross + 10] = log_popularity + np.log(lift)
        if inputs.segment_item_rate is not None and inputs.segment_posterior is not None:
            # where the segments rate the item itself: the log of its expected rate under the posterior
            rate = inputs.segment_item_rate[:, item_index].T
            rated = np.isfinite(rate).all(axis=1)
            expected = (inputs.segment_posterior[recipient_index[rated]] * rate[rated]).sum(axis=1)
            matrix[rated, cross + 10] = np.log(expected)
    return matrix


def all_pairs(n_recipients: int, n_items: int, start: int = 0, stop: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays of every (recipient, item) pair for recipients [start, stop), row-major."""
    stop = n_recipients if stop is None else stop
    rows = np.repeat(np.arange(start, stop), n_items)
    return rows, np.tile(np.arange(n_items), stop - start)
