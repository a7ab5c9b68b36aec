"""``kairos evaluate``: a campaign's item policy scored against logged sends, before it goes live.

The logged decisions are the first-slot impressions of the campaign pool's items (Kairos's own
sends or imported history) that carry a propensity. For each, the policy to evaluate (the
campaign's promoted ranker, a candidate version, or the popularity fallback) scores every item
that was published by then, with features as of that day, and turns the scores into its
first-slot probabilities with the campaign's item exploration. The reward is the campaign goal
credited to that impression inside ``goal_window``. See :mod:`engine.learn.ope`.

The reward model of DR is the scorer itself when it predicts probabilities (the pointwise
objective), and otherwise a cross-fitted calibration of its scores (mean reward per score
decile, from the other half of the decisions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from engine.errors import SpecError
from engine.learn.exploration import decayed_exploration, slot_distribution
from engine.learn.ope import OffPolicyReport, binned_reward_model, evaluate_policy, predict_binned
from engine.learn.ranker import ItemScorer, LightGBMRanker
from engine.learn.training import load_impressions
from engine.spec.model import CampaignSpec
from engine.store import Store


@dataclass(frozen=True)
class EvaluationReport:
    campaign: str
    scorer: str
    days: int
    skipped: int
    report: OffPolicyReport

    def to_json(self) -> dict[str, object]:
        return {"campaign": self.campaign, "policy": self.scorer, "days": self.days,
                "skipped_without_propensity": self.skipped, **self.report.to_json()}


def evaluate_campaign(store: Store, spec: CampaignSpec, scorer: ItemScorer, now: datetime, rng: np.random.Generator,
                      *, days: int = 30) -> EvaluationReport:
    """Off-policy estimates of ``scorer`` (with ``spec``'s exploration) on the last ``days`` of logs."""
    impressions = load_impressions(store, spec, now, history_days=days)
    first = impressions.position <= 0
    usable = first & np.isfinite(impressions.propensity) & (impressions.propensity > 0)
    rows = np.flatnonzero(usable)
    if len(rows) == 0:
        raise SpecError(spec.source, "content.pool",
                        f"none of the {int(first.sum())} logged first-slot impressions of pool {spec.content.pool!r} "
                        "in the evaluation window carries a propensity; off-policy evaluation needs the "
                        "probability each logged item was shown with (the `propensity` column of events)",
                        line=spec.line_of("content.pool"))
    scores = impressions.score_every_item(scorer, rows)
    published = np.array([i.published_at.timestamp() for i in impressions.items])
    available = published[None, :] <= impressions.ts[rows][:, None] + 1.0
    available[np.arange(len(rows)), impressions.item[rows]] = True  # it was shown, so it was there
    optimize = spec.optimize
    ids = [i.id for i in impressions.items]
    exploration = decayed_exploration(optimize.exploration, scorer.evidence, optimize.exploration_decay)
    target = slot_distribution(scorer.policy_scores(scores, ids), available, optimize.item_exploration,
                               exploration, optimize.temperature, scorer.explorable(ids))
    logged_item = impressions.item[rows]
    rewards = impressions.positive[rows].astype(float)
    if isinstance(scorer, LightGBMRanker) and scorer.objective == "binary":
        predicted = 1.0 / (1.0 + np.exp(-scores))
    else:
        folds = rng.integers(0, 2, size=len(rows))
        edges, rates = binned_reward_model(scores[np.arange(len(rows)), logged_item], rewards, folds)
        predicted = predict_binned(edges, rates, scores, folds)
    picked = np.arange(len(rows)), logged_item
    report = evaluate_policy(rewards, impressions.propensity[rows], target[picked], rng,
                             direct=(target * predicted).sum(axis=1), logged_prediction=predicted[picked])
    return EvaluationReport(spec.name, scorer.version, days, int(first.sum() - len(rows)), report)
