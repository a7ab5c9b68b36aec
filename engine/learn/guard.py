"""A conservative item policy for one-item messages (``[optimize] confidence``).

A personalized choice among a few arms (the men's e-mail, the women's e-mail, no e-mail) only
pays where the model's predicted differences are real; elsewhere its noise costs goal events
against simply sending the arm that is best on average. The guard keeps that arm (the
*default*) for everyone, and lets a recipient get another arm only where the ranker predicts a
gain over the default of at least that arm's *threshold* — a size of predicted gain that, on
held-out folds of the training data, proved to bring a positive gain at the campaign's
confidence:

1. the training rows are split into folds by recipient; a model fit on the other folds scores
   every arm for each row (cross-fitting: no row is scored by a model that saw it);
2. each row gets doubly robust pseudo-outcomes per arm, q(x, a) + 1[a = logged] (r - q(x, a)) / p,
   unbiased for the goal rate of sending arm a to that recipient whenever the logged
   propensities p are right (a randomized experiment, or Kairos's own logged decisions);
3. the default is the arm with the best mean pseudo-outcome;
4. for each other arm, among candidate thresholds (quantiles of its positive predicted gains),
   the one whose total pseudo-outcome gain over the default has the highest lower confidence
   bound is kept, if that bound is above zero; otherwise the arm is never chosen over the default;
5. an arm that is never chosen and whose mean pseudo-outcome is below the default's at the same
   confidence is *eliminated* (successive elimination): exploration stops spending messages on
   it, since every one of them is expected to lose goal events. (Its logged history still
   counts when the ranker and the guard are next trained on the window that holds it.)

Gains are in the scorer's raw units (log-odds for the pointwise objective), so the thresholds
apply to the final model's scores. The guard is stored with the ranker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

FOLDS = 5
THRESHOLD_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9)
MIN_ROWS = 500


@dataclass(frozen=True)
class ItemGuard:
    """Keep ``default`` unless another item's score beats it by that item's threshold."""

    default: str
    thresholds: Mapping[str, float]   # item id -> minimum raw-score gain over the default
    confidence: float
    estimates: Mapping[str, Mapping[str, float]]  # per other item: the best threshold's gain, bound, share
    eliminated: tuple[str, ...] = ()  # items proven worse than the default and better for no one

    def apply(self, scores: np.ndarray, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(recipients x items) scores where an item that does not clear its threshold ranks just
        below the default (items the guard never saw count as not clearing it)."""
        ids = [str(i) for i in item_ids]
        if self.default not in ids:
            return scores
        column = ids.index(self.default)
        default = scores[:, column:column + 1]
        threshold = np.array([self.thresholds.get(i, np.inf) if i != self.default else -np.inf for i in ids])
        passing = (scores - default) >= threshold[None, :]
        return np.asarray(np.where(passing, scores, np.minimum(scores, default - 1e-6)))

    def explorable(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(items,) False for the eliminated items: exploration spends nothing on them."""
        return np.array([str(i) not in self.eliminated for i in item_ids], dtype=bool)

    def to_json(self) -> dict[str, Any]:
        return {"default": self.default, "thresholds": dict(self.thresholds), "confidence": self.confidence,
                "estimates": {k: dict(v) for k, v in self.estimates.items()}, "eliminated": list(self.eliminated)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemGuard:
        return cls(str(data["default"]), {str(k): float(v) for k, v in data["thresholds"].items()},
                   float(data["confidence"]), {str(k): dict(v) for k, v in data.get("estimates", {}).items()},
                   tuple(str(i) for i in data.get("eliminated", ())))


def pseudo_outcomes(scores: np.ndarray, logged: np.ndarray, rewards: np.ndarray, propensity: np.ndarray
                    ) -> np.ndarray:
    """(rows x items) doubly robust pseudo-outcomes from log-odds ``scores``."""
    q = 1.0 / (1.0 + np.exp(-scores))
    rows = np.arange(len(q))
    out = q.copy()
    out[rows, logged] += (rewards - q[rows, logged]) / propensity
    return np.asarray(out)


def _bounded_mean(terms: np.ndarray, z: float) -> tuple[float, float]:
    """The mean of ``terms`` and its lower confidence bound (``z`` standard errors below)."""
    mean = float(terms.mean())
    return mean, mean - z * float(terms.std() / np.sqrt(len(terms)))


def choose_thresholds(scores: np.ndarray, outcomes: np.ndarray, item_ids: Sequence[str], confidence: float
                      ) -> ItemGuard:
    """The guard from out-of-fold ``scores`` and pseudo-``outcomes`` (both rows x items)."""
    z = NormalDist().inv_cdf(confidence)
    default = int(outcomes.mean(axis=0).argmax())
    thresholds: dict[str, float] = {}
    estimates: dict[str, dict[str, float]] = {}
    eliminated: list[str] = []
    for item in range(scores.shape[1]):
        if item == default:
            continue
        name = str(item_ids[item])
        difference = outcomes[:, item] - outcomes[:, default]
        gain = scores[:, item] - scores[:, default]
        positive = gain[gain > 0]
        if len(positive):
            best = max(((*_bounded_mean(np.where(gain >= threshold, difference, 0.0), z), float(threshold))
                        for threshold in np.unique(np.quantile(positive, THRESHOLD_QUANTILES))),
                       key=lambda candidate: candidate[1])
            estimates[name] = {"gain": round(best[0], 6), "lower_bound": round(best[1], 6),
                               "share": round(float((gain >= best[2]).mean()), 4)}
            if best[1] > 0:
                thresholds[name] = best[2]
                continue
        if _bounded_mean(-difference, z)[1] > 0:  # worse than the default on average
            eliminated.append(name)
    return ItemGuard(str(item_ids[default]), thresholds, confidence, estimates, tuple(eliminated))


def fit_guard(recipient: np.ndarray, logged: np.ndarray, rewards: np.ndarray, propensity: np.ndarray,
              item_ids: Sequence[str], score_fold: Callable[[np.ndarray, np.ndarray], np.ndarray],
              confidence: float, rng: np.random.Generator) -> ItemGuard | None:
    """Cross-fit and choose the guard (see the module docstring).

    :param recipient: each training row's recipient (folds never split one recipient).
    :param score_fold: (fit rows, scored rows) -> (scored rows x items) raw scores of a model fit
        on the first rows only.
    :returns: None when the rows are too few or carry no usable propensities.
    """
    usable = np.isfinite(propensity) & (propensity > 0)
    if len(logged) < MIN_ROWS or not usable.all():
        return None
    fold_of = rng.integers(0, FOLDS, size=int(recipient.max()) + 1)[recipient]
    scores = np.zeros((len(logged), len(item_ids)))
    for fold in range(FOLDS):
        held = np.flatnonzero(fold_of == fold)
        if len(held):
            scores[held] = score_fold(np.flatnonzero(fold_of != fold), held)
    return choose_thresholds(scores, pseudo_outcomes(scores, logged, rewards, propensity), item_ids, confidence)


__all__ = ["ItemGuard", "choose_thresholds", "fit_guard", "pseudo_outcomes"]
