"""The policy: fresh features + models -> one :class:`Decision` per recipient, with probabilities.

Called at send time for a batch of recipients (and by ``kairos plan`` to show what it would do
now). In order, for the whole batch at once:

1. features: each recipient's from the event log up to now, each item's from the pool now;
2. items: the campaign's promoted ranker scores every (recipient x item) pair (the popularity
   fallback when no model has been promoted yet), and :mod:`engine.learn.exploration` fills
   the slots, logging each pick's probability given the earlier slots (with the ranker's taste
   segments, each later slot scored as if the items above it were not clicked);
3. channel: the predicted engagement on each reachable channel, with exploration;
4. variant: the bandit over the campaign's variants, from outcomes credited inside the goal
   window across all runs, behind the guardrail, or the stages of a staged test. With
   ``optimize.split_by`` the bandit runs per persona or tier (each group's outcomes, shrunk
   toward the campaign's while the group has few), so each group can find its own winner.

Everything is vectorized over recipients and items; the only Python loops are over slots and
over the finished decisions to package them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from sqlmodel import Session

from engine.audience.build import reachable
from engine.audience.experiments import group_labels
from engine.features.attributes import AttributeEncoding
from engine.features.content import ItemTable, build_item_table
from engine.features.events import load_events
from engine.features.pairs import FeatureSchema, PairInputs, pair_inputs
from engine.features.recipients import BASE_NAMES, HORIZON_DAYS, RecipientFeatures, recipient_features
from engine.learn.bandit import ArmOutcomes, Guardrail, StagedTest, mix_exploration, variant_policy
from engine.learn.channel import choose_channels, predicted_rates
from engine.learn.exploration import SlotCascade, SlotPicks, decayed_exploration, fill_slots
from engine.learn.models import promoted_ranker
from engine.learn.outcomes import arm_outcomes, arm_outcomes_by_group
from engine.learn.ranker import ItemScorer, PopularityScorer
from engine.spec.model import CampaignSpec
from engine.store import queries
from engine.store.queries import RecipientRow

CHANNEL_MODEL = "engagement-1"
# Variant outcomes are re-read from the event log every OUTCOME_REFRESH, or, for a campaign so
# large that reading them takes a while, every REFRESH_COST_FACTOR times as long as that took:
# events reach the bandit within seconds, and re-reading never costs over a tenth of the time.
OUTCOME_REFRESH = timedelta(seconds=10)
REFRESH_COST_FACTOR = 10
_HASH_MULTIPLIERS = np.random.default_rng(20261).integers(1, 2**62, size=512, dtype=np.uint64) | np.uint64(1)


class ItemPick(NamedTuple):
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
    context: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def propensity(self) -> float:
        """The probability of the whole decision (items, channel and variant together)."""
        p = self.channel_probability * self.variant_probability
        for pick in self.items:
            p *= pick.probability
        return p

    def log(self) -> dict[str, Any]:
        """The JSON form stored on the `sent` event and written by ``kairos plan``."""
        logged = {
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
        logged.update(self.context)
        return logged


@dataclass(frozen=True)
class BatchFeatures:
    """Everything a batch's decisions are computed from (no store access after this)."""

    recipient_ids: tuple[str, ...]
    items: ItemTable
    recipients: RecipientFeatures
    inputs: PairInputs
    reachable: np.ndarray     # (recipients x campaign channels)


@dataclass(frozen=True)
class DecisionBatch:
    """The decisions of a batch as columns; :meth:`decisions` packages them per recipient."""

    features: BatchFeatures
    scores: np.ndarray
    picks: SlotPicks
    channel: np.ndarray
    channel_probability: np.ndarray
    variant: np.ndarray
    variant_probability: np.ndarray
    model_versions: dict[str, str]
    context: dict[str, Any]
    channels: tuple[str, ...]
    variants: tuple[str, ...]
    groups: tuple[str, ...] | None = None   # each recipient's experiment group, with split_by

    @property
    def decided(self) -> np.ndarray:
        """True where the recipient gets a message: a reachable channel and at least one item."""
        return np.asarray((self.channel >= 0) & (self.picks.items[:, 0] >= 0)) if self.picks.items.shape[1] \
            else np.zeros(len(self.channel), dtype=bool)

    def features_hashes(self) -> np.ndarray:
        values = np.ascontiguousarray(self.features.recipients.values, dtype=np.float32)
        bits = values.view(np.uint32).astype(np.uint64)
        return np.asarray((bits * _HASH_MULTIPLIERS[: bits.shape[1]]).sum(axis=1, dtype=np.uint64))

    def decisions(self) -> list[Decision]:
        ids = [str(i) for i in self.features.items.ids]
        rows = np.flatnonzero(self.decided)
        # The batch's columns become Python numbers once, not one numpy scalar at a time.
        slots = self.picks.items[rows]
        scores = np.take_along_axis(self.scores[rows], np.maximum(slots, 0), axis=1).tolist()
        probability = self.picks.probability[rows].tolist()
        channel, channel_probability = self.channel[rows].tolist(), self.channel_probability[rows].tolist()
        variant, variant_probability = self.variant[rows].tolist(), self.variant_probability[rows].tolist()
        hashes = self.features_hashes()[rows].tolist()
        out = []
        for k, (row, picked) in enumerate(zip(rows.tolist(), slots.tolist(), strict=True)):
            picks = tuple(ItemPick(ids[j], s, scores[k][s], probability[k][s]) for s, j in enumerate(picked) if j >= 0)
            candidates: tuple[tuple[str, int, float], ...] = ()
            if self.picks.candidates is not None:
                slot_index, item_index = np.nonzero(self.picks.candidates[row])
                candidates = tuple((ids[j], int(s), float(self.picks.candidates[row, s, j]))
                                   for s, j in zip(slot_index, item_index, strict=True))
            out.append(Decision(
                recipient_id=self.features.recipient_ids[row], items=picks,
                channel=self.channels[channel[k]], channel_probability=channel_probability[k],
                variant=self.variants[variant[k]], variant_probability=variant_probability[k],
                model_versions=self.model_versions, features_hash=f"{hashes[k]:016x}",
                candidates=candidates,
                context=self.context if self.groups is None else {**self.context, "experiment_group": self.groups[row]},
            ))
        return out


NO_GROUP = "(none)"
#: How many sends of the campaign-wide evidence a group starts from: a new persona begins near the
#: campaign's posterior and moves away as its own messages come in.
GROUP_PRIOR_SENDS = 20.0


@dataclass(frozen=True)
class ExperimentGroups:
    """Who is in which experiment group, and each group's outcomes per variant."""

    labels: dict[str, str]
    outcomes: dict[str, ArmOutcomes]

    def within(self, group: str, overall: ArmOutcomes) -> ArmOutcomes:
        """The group's counts plus :data:`GROUP_PRIOR_SENDS` pseudo-sends at the campaign's rates."""
        own = self.outcomes.get(group, ArmOutcomes.empty(len(overall.sends)))
        rate = (overall.successes + 1.0) / (overall.goal_trials + 2.0)
        return ArmOutcomes(own.sends + GROUP_PRIOR_SENDS, own.successes + GROUP_PRIOR_SENDS * rate,
                           own.unsubscribes, own.complaints, own.goal_trials + GROUP_PRIOR_SENDS)


class Policy:
    """The decision policy of one campaign.

    :param rng: the source of every random choice (seed it for reproducible decisions).
    :param scorer: score items with this model instead of the campaign's promoted one (to
        evaluate a candidate, or in the simulator).
    """

    def __init__(self, spec: CampaignSpec, rng: np.random.Generator, *, scorer: ItemScorer | None = None) -> None:
        self.spec = spec
        self.rng = rng
        self.variants = variant_policy(spec.optimize.bandit)
        self.guardrail = Guardrail(**spec.optimize.guardrail.__dict__) if spec.optimize.guardrail else None
        self._scorer = scorer
        self._outcomes: tuple[datetime, ArmOutcomes, bool] | None = None
        self._refresh = OUTCOME_REFRESH
        self._groups: tuple[datetime, ExperimentGroups] | None = None

    def item_table(self, session: Session, now: datetime) -> ItemTable:
        return build_item_table(session, self.spec.content, now, self.spec.goal_event)

    def scorer(self, session: Session) -> ItemScorer:
        """The item scorer in use: the one given, else the promoted ranker, else popularity."""
        if self._scorer is not None:
            return self._scorer
        promoted = promoted_ranker(session, self.spec.name)
        return promoted[1] if promoted is not None else PopularityScorer()

    def features(self, session: Session, recipients: Sequence[RecipientRow], now: datetime, items: ItemTable,
                 scorer: ItemScorer) -> BatchFeatures:
        """Fresh features of ``recipients`` and ``items`` at ``now``, in ``scorer``'s schema."""
        ids = [r.id for r in recipients]
        schema = scorer.schema or FeatureSchema(AttributeEncoding(), AttributeEncoding(), items.topic_names)
        events = load_events(session, ids, now - timedelta(days=HORIZON_DAYS), now)
        features = recipient_features(events, [r.timezone for r in recipients], [r.attributes for r in recipients],
                                      schema.recipient_encoding, now)
        inputs = pair_inputs(schema, features, items, [i.attributes for i in items.items])
        can_reach = np.array([[reachable(r, c) for c in self.spec.channels] for r in recipients], dtype=bool)
        return BatchFeatures(tuple(ids), items, features, inputs, can_reach.reshape(len(ids), len(self.spec.channels)))

    def arm_outcomes(self, session: Session, now: datetime) -> tuple[ArmOutcomes, bool]:
        """Per-variant outcomes (re-read every :data:`OUTCOME_REFRESH` or so) and whether a staged test exploits."""
        cached = self._outcomes
        if cached is None or not timedelta(0) <= now - cached[0] < self._refresh:
            started = time.perf_counter()
            names = [v.name for v in self.spec.variants]
            outcomes = arm_outcomes(session, self.spec.name, names, self.spec.goal_event, self.spec.goal_window, now)
            staged = self.spec.optimize.staged
            first = queries.first_send_time(session, self.spec.name) if staged is not None else None
            exploiting = staged is not None and first is not None and now >= first + staged.wait
            self._outcomes = cached = (now, outcomes, exploiting)
            took = time.perf_counter() - started
            self._refresh = max(OUTCOME_REFRESH, timedelta(seconds=REFRESH_COST_FACTOR * took))
        return cached[1], cached[2]

    def experiment_groups(self, session: Session, now: datetime) -> ExperimentGroups | None:
        """With ``optimize.split_by``: each recipient's group and each group's outcomes (re-read as
        often as the campaign's); None without it."""
        by = self.spec.optimize.split_by
        if by is None:
            return None
        cached = self._groups
        if cached is None or not timedelta(0) <= now - cached[0] < self._refresh:
            labels = group_labels(session, self.spec, by, now)
            names = [v.name for v in self.spec.variants]
            outcomes = arm_outcomes_by_group(session, self.spec.name, names, self.spec.goal_event,
                                             self.spec.goal_window, now, labels)
            self._groups = cached = (now, ExperimentGroups(labels, outcomes))
        return cached[1]

    def variant_distribution(self, outcomes: ArmOutcomes, exploiting: bool, *,
                             within: ArmOutcomes | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """P(variant) for this batch, and what to log about how it was reached.

        :param within: the outcomes of one experiment group to choose by; the guardrail still
            judges the campaign's (an arm that drives unsubscribes is paused everywhere).
        """
        names = [v.name for v in self.spec.variants]
        allowed = self.guardrail.paused(outcomes) if self.guardrail else np.zeros(len(names), dtype=bool)
        allowed = ~allowed
        policy = StagedTest(exploiting) if self.spec.optimize.staged is not None else self.variants
        counts = within if within is not None else outcomes
        inner = policy.probabilities(counts.goal_trials[allowed], counts.successes[allowed], self.rng)
        distribution = np.zeros(len(names))
        distribution[allowed] = inner
        optimize = self.spec.optimize
        # The evidence behind this choice: the sends of the group it is made in (or the campaign's).
        exploration = decayed_exploration(optimize.exploration, float(counts.sends.sum()), optimize.exploration_decay)
        distribution = mix_exploration(distribution, exploration, allowed)
        context: dict[str, Any] = {}
        if not allowed.all():
            context["paused_variants"] = [n for n, a in zip(names, allowed, strict=True) if not a]
        if self.spec.optimize.staged is not None:
            context["stage"] = "exploit" if exploiting else "explore"
        return distribution, context

    def decide_features(self, features: BatchFeatures, scorer: ItemScorer, outcomes: ArmOutcomes,
                        exploiting: bool = False, *, candidates: bool = False,
                        groups: ExperimentGroups | None = None) -> DecisionBatch:
        """Decide for a batch from its features alone (pure numpy: no store access)."""
        optimize, content = self.spec.optimize, self.spec.content
        n = len(features.recipient_ids)
        scores = scorer.policy_scores(scorer.score_all(features.inputs), features.items.ids)
        diversity = content.diversity
        decay = optimize.exploration_decay
        inputs = features.inputs
        segment_rates = inputs.segment_item_rates()
        cascade = SlotCascade.of(inputs.segment_posterior, segment_rates) \
            if segment_rates is not None and inputs.segment_posterior is not None else None
        picks = fill_slots(scores, content.items, self.rng, kind=optimize.item_exploration,
                           exploration=decayed_exploration(optimize.exploration, scorer.evidence, decay),
                           temperature=optimize.temperature,
                           topic_codes=features.items.topic_codes, with_candidates=candidates,
                           max_per_topic=diversity.max_per_value if diversity is not None else None,
                           explorable=scorer.explorable(features.items.ids), cascade=cascade)
        sent = float(features.recipients.values[:, BASE_NAMES.index("sent_90d")].sum()) if n else 0.0
        channel = choose_channels(predicted_rates(features.recipients, self.spec.channels), features.reachable,
                                  decayed_exploration(optimize.exploration, sent, decay), self.rng)
        distribution, context = self.variant_distribution(outcomes, exploiting)
        variant = self.rng.choice(len(distribution), size=n, p=distribution)
        probability = distribution[variant]
        labels = None
        if groups is not None:
            labels = tuple(groups.labels.get(r, NO_GROUP) for r in features.recipient_ids)
            label_array = np.asarray(labels, dtype=object)
            for name in sorted(set(labels)):  # a loop over groups, not recipients
                rows = np.flatnonzero(label_array == name)
                within, _ = self.variant_distribution(outcomes, exploiting, within=groups.within(name, outcomes))
                variant[rows] = self.rng.choice(len(within), size=len(rows), p=within)
                probability[rows] = within[variant[rows]]
        versions = {"ranker": scorer.version, "bandit": self.variants.name, "channel": CHANNEL_MODEL}
        return DecisionBatch(
            features=features, scores=scores, picks=picks, channel=channel.channel,
            channel_probability=channel.probability, variant=variant, variant_probability=probability,
            model_versions=versions, context=context, channels=self.spec.channels,
            variants=tuple(v.name for v in self.spec.variants), groups=labels,
        )

    def decide_batch(self, session: Session, recipients: Sequence[RecipientRow], now: datetime, *,
                     candidates: bool = False, items: ItemTable | None = None) -> DecisionBatch:
        table = items if items is not None else self.item_table(session, now)
        scorer = self.scorer(session)
        features = self.features(session, recipients, now, table, scorer)
        outcomes, exploiting = self.arm_outcomes(session, now)
        return self.decide_features(features, scorer, outcomes, exploiting, candidates=candidates,
                                    groups=self.experiment_groups(session, now))

    def decide(self, session: Session, recipients: Sequence[RecipientRow], now: datetime,
               *, candidates: bool = False, items: ItemTable | None = None) -> list[Decision]:
        """Decide for ``recipients`` at ``now``. Recipients the policy cannot reach are skipped.

        :param candidates: also return every item's per-slot probability (for ``kairos plan``).
        :param items: a prebuilt item table (callers deciding many batches at one moment).
        """
        table = items if items is not None else self.item_table(session, now)
        if not recipients or len(table) == 0:
            return []
        return self.decide_batch(session, recipients, now, candidates=candidates, items=table).decisions()
