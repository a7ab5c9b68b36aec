"""Experiments inside segments: variant outcomes and bandit posteriors split by persona or tier.

A variant that wins overall can lose with one persona. :func:`split_posteriors` counts each
variant's messages and goals per group (the recipient's segment in the latest build, or their
propensity tier for the campaign), and gives each (group, variant) its Beta posterior — the
same Beta(1 + goals, 1 + misses) the Thompson sampler draws from — with a 95% credible interval
and the probability that it is the best variant within its group (both from seeded draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlmodel import Session

from engine.audience.behaviour import load_frame
from engine.audience.propensity import PropensityModel, TopicGoalRates, assign_tiers
from engine.spec.model import CampaignSpec
from engine.store import columnar

SPLITS = ("segment", "tier")
DRAWS = 4000


@dataclass(frozen=True)
class ArmPosterior:
    group: str
    variant: str
    sends: int
    goals: int
    mean: float
    low: float
    high: float
    p_best: float


def group_labels(session: Session, spec: CampaignSpec, by: str, now: datetime,
                 model: PropensityModel | None = None) -> dict[str, str]:
    """{recipient_id: group}: their segment in the latest build, or their propensity tier for ``spec``."""
    if by == "segment":
        version = columnar.latest_segment_version(session)
        if version is None:
            return {}
        ids, names = columnar.segment_labels(session, version)
        return dict(zip(ids, names, strict=True))
    frame = load_frame(session)
    scores = (model or TopicGoalRates()).predict(session, frame, spec, now)
    return dict(zip(frame.ids, assign_tiers(scores, spec.audience.tiers).tolist(), strict=True))


def split_posteriors(session: Session, spec: CampaignSpec, labels: dict[str, str],
                     rng: np.random.Generator) -> list[ArmPosterior]:
    """Per (group, variant): messages, goals, posterior mean, 95% interval and P(best in group)."""
    variants = [v.name for v in spec.variants]
    sent = _totals(columnar.campaign_variant_counts(session, spec.name, "sent"), labels, variants)
    goals = _totals(columnar.campaign_variant_counts(session, spec.name, spec.goal_event), labels, variants)
    arms: list[ArmPosterior] = []
    for group in sorted(set(sent) | set(goals)):
        n = sent.get(group, np.zeros(len(variants)))
        arms += arm_posteriors(group, variants, n, goals.get(group, np.zeros(len(variants))), rng)
    return arms


def arm_posteriors(group: str, variants: Sequence[str], sends: np.ndarray, goals: np.ndarray,
                   rng: np.random.Generator) -> list[ArmPosterior]:
    """The Beta posterior of each variant of one group, from its messages and goals (aligned)."""
    n = np.asarray(sends, dtype=float)
    g = np.minimum(np.asarray(goals, dtype=float), n)
    a, b = 1.0 + g, 1.0 + n - g
    draws = rng.beta(a[:, None], b[:, None], size=(len(variants), DRAWS))
    p_best = np.bincount(draws.argmax(axis=0), minlength=len(variants)) / DRAWS
    low, high = np.quantile(draws, [0.025, 0.975], axis=1)
    return [ArmPosterior(group, variant, int(n[j]), int(g[j]), float(a[j] / (a[j] + b[j])), float(low[j]),
                         float(high[j]), float(p_best[j])) for j, variant in enumerate(variants)]


def _totals(counts: columnar.VariantCounts, labels: dict[str, str],
            variants: Sequence[str]) -> dict[str, np.ndarray]:
    column = {v: j for j, v in enumerate(variants)}
    totals: dict[str, np.ndarray] = {}
    for recipient_id, variant, count in zip(counts.recipient_ids, counts.variants, counts.counts, strict=True):
        j = column.get(variant)
        if j is None:
            continue
        group = labels.get(recipient_id, "(none)")
        totals.setdefault(group, np.zeros(len(variants)))[j] += count
    return totals
