"""The policy: fresh features + models -> one :class:`Decision` per recipient, with probabilities.

Called at send time for a batch of recipients (and by ``kairos plan`` to show what it would do
now). Everything is vectorized over (recipients x items); the only Python loops are over slots
and over the finished decisions to package them.

Items: each slot takes the best remaining item by score with probability ``1 - exploration``,
or a uniformly random remaining one with probability ``exploration``. The logged probability of
an item in a slot is its chance given the items already placed in earlier slots, so per slot the
probabilities of all candidates sum to 1.

Scores: the log of the item's smoothed click rate plus the log of the recipient's affinity for
the item's topic, minus a penalty for items the recipient was already sent. (The learned ranker
replaces this score; the selection and logging around it stay.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from engine.audience.build import reachable
from engine.features.content import ItemTable, build_item_table
from engine.features.recipients import already_sent, topic_affinity
from engine.learn.bandit import mix_exploration, variant_policy
from engine.spec.model import CampaignSpec
from engine.store import queries
from engine.store.queries import RecipientRow

RANKER_VERSION = "popularity-affinity-1"
AFFINITY_WEIGHT = 1.0
SEEN_PENALTY = 5.0


@dataclass(frozen=True)
class ItemPick:
    id: str
    slot: int
    score: float
    probability: float


@dataclass(frozen=True)
class Decision:
    """What one recipient gets, and the probability the policy gave each choice."""

    recipient_id: str
    items: tuple[ItemPick, ...]
    channel: str
    channel_probability: float
    variant: str
    variant_probability: float
    model_versions: dict[str, str]
    features_hash: str
    candidates: tuple[tuple[str, int, float], ...] = field(default=(), compare=False)

    @property
    def propensity(self) -> float:
        """The probability of the whole decision (items, channel and variant together)."""
        p = self.channel_probability * self.variant_probability
        for pick in self.items:
            p *= pick.probability
        return p

    def log(self) -> dict[str, Any]:
        """The JSON form stored on the `sent` event and written by ``kairos plan``."""
        return {
            "items": [{"id": p.id, "slot": p.slot, "score": round(p.score, 6), "probability": p.probability}
                      for p in self.items],
            "channel": self.channel,
            "channel_probability": self.channel_probability,
            "variant": self.variant,
            "variant_probability": self.variant_probability,
            "propensity": self.propensity,
            "model_versions": self.model_versions,
            "features_hash": self.features_hash,
        }


class Policy:
    """The decision policy of one campaign.

    :param rng: the source of every random choice (seed it for reproducible decisions).
    """

    def __init__(self, spec: CampaignSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.variants = variant_policy(spec.optimize.bandit)

    def item_table(self, session: Session, now: datetime) -> ItemTable:
        return build_item_table(session, self.spec.content, now)

    def decide(self, session: Session, recipients: Sequence[RecipientRow], now: datetime,
               *, candidates: bool = False, items: ItemTable | None = None) -> list[Decision]:
        """Decide for ``recipients`` at ``now``. Recipients the policy cannot reach are skipped.

        :param candidates: also return every item's per-slot probability (for ``kairos plan``).
        :param items: a prebuilt item table (callers deciding many batches at one moment).
        """
        table = items if items is not None else self.item_table(session, now)
        if not recipients or len(table) == 0:
            return []
        ids = [r.id for r in recipients]
        scores = self._scores(session, ids, table, now)
        picks, slot_candidates = self._pick_items(scores, table, candidates)
        variant_names = [v.name for v in self.spec.variants]
        outcomes = queries.variant_outcomes(session, self.spec.name, self.spec.goal_event)
        sends = np.array([outcomes.get(v, (0, 0))[0] for v in variant_names], dtype=float)
        goals = np.array([outcomes.get(v, (0, 0))[1] for v in variant_names], dtype=float)
        variant_p = mix_exploration(self.variants.probabilities(sends, goals, self.rng),
                                    self.spec.optimize.exploration)
        chosen_variant = self.rng.choice(len(variant_names), size=len(ids), p=variant_p)
        versions = {"ranker": RANKER_VERSION, "bandit": self.variants.name}

        decisions = []
        for row, recipient in enumerate(recipients):
            channel = next((c for c in self.spec.channels if reachable(recipient, c)), None)
            if channel is None or not picks[row]:
                continue
            digest = hashlib.blake2b(scores[row].tobytes(), digest_size=8).hexdigest()
            decisions.append(Decision(
                recipient_id=recipient.id,
                items=tuple(picks[row]),
                channel=channel,
                channel_probability=1.0,
                variant=variant_names[chosen_variant[row]],
                variant_probability=float(variant_p[chosen_variant[row]]),
                model_versions=versions,
                features_hash=digest,
                candidates=tuple(slot_candidates[row]) if candidates else (),
            ))
        return decisions

    def _scores(self, session: Session, ids: list[str], table: ItemTable, now: datetime) -> np.ndarray:
        affinity = topic_affinity(session, ids, table.topic_names, now)[:, table.topic_codes]
        scores = np.log(table.popularity)[None, :] + AFFINITY_WEIGHT * np.log(affinity)
        scores -= SEEN_PENALTY * already_sent(session, ids, list(table.ids))
        return np.asarray(scores)

    def _pick_items(self, scores: np.ndarray, table: ItemTable, with_candidates: bool
                    ) -> tuple[list[list[ItemPick]], list[list[tuple[str, int, float]]]]:
        n_rows, n_items = scores.shape
        epsilon = self.spec.optimize.exploration
        available = np.ones((n_rows, n_items), dtype=bool)
        diversity = self.spec.content.diversity
        topic_counts = np.zeros((n_rows, max(len(table.topic_names), 1)), dtype=int)
        rows = np.arange(n_rows)
        picks: list[list[ItemPick]] = [[] for _ in range(n_rows)]
        candidates: list[list[tuple[str, int, float]]] = [[] for _ in range(n_rows)]
        for slot in range(min(self.spec.content.items, n_items)):
            n_available = available.sum(axis=1)
            active = n_available > 0
            if not active.any():
                break
            best = np.where(available, scores, -np.inf).argmax(axis=1)
            noise = np.where(available, self.rng.random((n_rows, n_items)), -1.0)
            explore = self.rng.random(n_rows) < epsilon
            chosen = np.where(explore, noise.argmax(axis=1), best)
            share = np.where(active, epsilon / np.maximum(n_available, 1), 0.0)
            probability = share + (1.0 - epsilon) * (chosen == best)
            for row in np.flatnonzero(active):
                item = int(chosen[row])
                picks[row].append(ItemPick(str(table.ids[item]), slot, float(scores[row, item]),
                                           float(probability[row])))
            if with_candidates:
                full = np.where(available, share[:, None], 0.0)
                full[rows, best] += (1.0 - epsilon) * active
                for row, item in zip(*np.nonzero(full), strict=True):
                    candidates[row].append((str(table.ids[item]), slot, float(full[row, item])))
            available[rows[active], chosen[active]] = False
            if diversity is not None:
                topic_counts[rows[active], table.topic_codes[chosen[active]]] += 1
                available &= topic_counts[:, table.topic_codes] < diversity.max_per_value
        return picks, candidates
