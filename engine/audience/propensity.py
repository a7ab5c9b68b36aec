"""Predicted propensity: the probability that a recipient reaches the campaign's goal with its content.

The audience asks a :class:`PropensityModel` for one probability per recipient, for this
campaign (its goal and the items its content pool offers now). Two implementations:

- :class:`TopicGoalRates` (the default, transparent): per recipient and topic, the rate at which
  impressions of that topic led to the goal, shrunk toward the recipient's overall
  responsiveness times the topic's population rate; a message of ``k`` items is as likely to
  reach the goal as ``1 - prod(1 - p)`` over the ``k`` best items it can hold.
- :class:`ItemScorePropensity`: wraps any per-impression scorer (recipients x items ->
  probability), such as a learned ranker, combining its ``k`` best items the same way, in chunks
  of recipients so memory stays flat.

Tiers (``high``, ``medium``, ``low``) cut the ranked scores at cumulative top percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from sqlmodel import Session

from engine.audience.behaviour import RecipientFrame
from engine.spec.model import CampaignSpec, Content, Tiers
from engine.spec.rules import Call, Column, Name, column_from_values, evaluate
from engine.store import columnar, queries

HISTORY_DAYS = 180
RECIPIENT_PRIOR = 2.0   # pseudo-goals behind a recipient's responsiveness
TOPIC_PRIOR = 3.0       # pseudo-impressions behind a recipient's rate on one topic
CHUNK = 20_000


@dataclass(frozen=True)
class CandidateItems:
    """The items the campaign's content offers now: ids and topics ('' for none)."""

    ids: tuple[str, ...]
    topics: tuple[str, ...]


class PropensityModel(Protocol):
    """recipients x the campaign's content -> probability of the campaign's goal."""

    name: str

    def predict(self, session: Session, frame: RecipientFrame, spec: CampaignSpec, now: datetime) -> np.ndarray:
        """One probability in [0, 1] per recipient of ``frame``, in its order."""
        ...


class ItemScorer(Protocol):
    """A per-impression model: P(goal | recipient, item), e.g. a learned ranker."""

    name: str

    def score_items(self, session: Session, recipient_ids: Sequence[str], items: CandidateItems,
                    spec: CampaignSpec, now: datetime) -> np.ndarray:
        """(len(recipient_ids) x len(items.ids)) probabilities."""
        ...


def candidate_items(session: Session, content: Content, now: datetime) -> CandidateItems:
    """The pool's items that pass ``content.where`` at ``now``."""
    items = queries.pool_items(session, content.pool)
    if content.where is not None and items:
        age = np.array([(now - i.published_at).total_seconds() / 3600 for i in items])

        def resolve(node: Name | Call) -> Column:
            assert isinstance(node, Name)  # content rules call only pure functions, evaluated in place
            if node.path[0] == "age_hours":
                return Column(age, np.ones(len(items), dtype=bool))
            if node.path[0] == "attributes":
                return column_from_values([i.attributes.get(node.path[1]) for i in items])
            return column_from_values([getattr(i, node.path[0]) for i in items])

        keep = evaluate(content.where, len(items), resolve, now)
        items = [i for i, k in zip(items, keep, strict=True) if k]
    return CandidateItems(tuple(i.id for i in items), tuple(i.topic or "" for i in items))


def combine_best(probabilities: np.ndarray, capacity: np.ndarray, slots: int) -> np.ndarray:
    """P(at least one goal) when ``slots`` impressions go to the best columns.

    :param probabilities: (recipients x columns) per-impression probabilities.
    :param capacity: how many impressions each column can take (items per topic, or 1 per item).
    """
    if probabilities.shape[1] == 0:
        return np.zeros(probabilities.shape[0])
    order = np.argsort(-probabilities, axis=1, kind="stable")
    best = np.take_along_axis(probabilities, order, axis=1)
    room = capacity[order]
    before = np.cumsum(room, axis=1) - room
    taken = np.clip(slots - before, 0, room)
    log_miss = (taken * np.log1p(-np.clip(best, 0.0, 0.999))).sum(axis=1)
    return np.asarray(1.0 - np.exp(log_miss))


class TopicGoalRates:
    """Smoothed per-topic goal rates from the event log (see the module docstring)."""

    name = "topic-goal-rates-1"

    def predict(self, session: Session, frame: RecipientFrame, spec: CampaignSpec, now: datetime) -> np.ndarray:
        since = now - timedelta(days=HISTORY_DAYS)
        goal = spec.goal_event
        if not columnar.has_item_events(session, goal):
            return self._per_message(session, frame, goal, since)
        items = candidate_items(session, spec.content, now)
        topics = sorted(set(items.topics))
        if not topics:
            return np.zeros(len(frame))
        rates = self.topic_rates(session, frame, goal, since, topics)
        per_topic = np.array([items.topics.count(t) for t in topics], dtype=float)
        if spec.content.diversity is not None:
            per_topic = np.minimum(per_topic, spec.content.diversity.max_per_value)
        return combine_best(rates, per_topic, spec.content.items)

    def topic_rates(self, session: Session, frame: RecipientFrame, goal: str, since: datetime,
                    topics: Sequence[str]) -> np.ndarray:
        """(recipients x topics) probability that one impression of the topic reaches the goal."""
        column = {t: j for j, t in enumerate(topics)}
        counts = columnar.topic_counts(session, ["sent", goal], since)
        rows = frame.positions(counts.recipient_ids)
        cols = np.fromiter((column.get(t, -1) for t in counts.topics), dtype=np.int64, count=len(counts.topics))
        is_goal = np.array([k == goal for k in counts.kinds], dtype=bool)
        known = (rows >= 0) & (cols >= 0)
        sends = np.zeros((len(frame), len(topics)))
        goals = np.zeros_like(sends)
        np.add.at(sends, (rows[known & ~is_goal], cols[known & ~is_goal]), counts.counts[known & ~is_goal])
        np.add.at(goals, (rows[known & is_goal], cols[known & is_goal]), counts.counts[known & is_goal])
        sends = np.maximum(sends, goals)
        overall = (goals.sum() + 1.0) / (sends.sum() + 2.0)
        topic_rate = (goals.sum(axis=0) + 10.0 * overall) / (sends.sum(axis=0) + 10.0)
        expected = sends @ topic_rate
        responsiveness = (goals.sum(axis=1) + RECIPIENT_PRIOR) / (expected + RECIPIENT_PRIOR)
        prior = responsiveness[:, None] * topic_rate[None, :]
        return np.asarray(np.clip((goals + TOPIC_PRIOR * prior) / (sends + TOPIC_PRIOR), 0.0, 0.99))

    def _per_message(self, session: Session, frame: RecipientFrame, goal: str, since: datetime) -> np.ndarray:
        messages, _ = frame.scatter(columnar.event_counts(session, "sent", since), 0.0)
        goals, _ = frame.scatter(columnar.event_counts(session, goal, since), 0.0)
        messages = np.maximum(messages, goals)
        overall = (goals.sum() + 1.0) / (messages.sum() + 2.0)
        return np.asarray((goals + RECIPIENT_PRIOR * overall) / (messages + RECIPIENT_PRIOR))


class ItemScorePropensity:
    """A :class:`PropensityModel` from a per-impression :class:`ItemScorer` (e.g. a learned ranker)."""

    def __init__(self, scorer: ItemScorer) -> None:
        self.scorer = scorer
        self.name = scorer.name

    def predict(self, session: Session, frame: RecipientFrame, spec: CampaignSpec, now: datetime) -> np.ndarray:
        items = candidate_items(session, spec.content, now)
        result = np.zeros(len(frame))
        capacity = np.ones(len(items.ids))
        for start in range(0, len(frame), CHUNK):
            ids = frame.ids[start:start + CHUNK]
            scores = self.scorer.score_items(session, ids, items, spec, now)
            result[start:start + len(ids)] = combine_best(scores, capacity, spec.content.items)
        return result


def top_share(scores: np.ndarray, eligible: np.ndarray, percent: float) -> np.ndarray:
    """The ``percent`` of ``eligible`` rows with the highest scores (ties go to the earlier id)."""
    candidates = np.flatnonzero(eligible)
    keep = math.ceil(len(candidates) * percent / 100.0 - 1e-9)
    order = candidates[np.argsort(-scores[candidates], kind="stable")][:keep]
    chosen = np.zeros(len(scores), dtype=bool)
    chosen[order] = True
    return chosen


def assign_tiers(scores: np.ndarray, tiers: Tiers) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` per row: cumulative top percentages of the ranked scores."""
    everyone = np.ones(len(scores), dtype=bool)
    labels = np.full(len(scores), "low", dtype=object)
    labels[top_share(scores, everyone, tiers.medium)] = "medium"
    labels[top_share(scores, everyone, tiers.high)] = "high"
    return labels
