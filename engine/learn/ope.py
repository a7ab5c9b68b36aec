"""Off-policy evaluation: what a new policy would have achieved, from decisions another one logged.

Each logged decision i has the action the logging policy took with probability ``mu_i`` (the
logged propensity), the reward that followed ``r_i``, and the new (target) policy's probability
``pi_i`` of the same action. With importance weights w_i = pi_i / mu_i:

- IPS, inverse propensity scoring: mean(w r). Unbiased, high variance.
- SNIPS, self-normalized: sum(w r) / sum(w). Slightly biased, much steadier.
- DR, doubly robust: mean(sum_a pi(a|x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i))) with a reward
  model q: unbiased when the propensities are right, low variance when q is good.

Intervals are percentile bootstrap intervals (resampling decisions with replacement). The effective sample size
(sum w)^2 / sum w^2 and the largest weight say how much the estimate can be trusted: a few
decisions with huge weights mean the logs rarely did what the new policy would do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 500
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high

    def to_json(self) -> dict[str, float]:
        return {"value": round(self.value, 6), "low": round(self.low, 6), "high": round(self.high, 6)}


@dataclass(frozen=True)
class OffPolicyReport:
    decisions: int
    logged: Estimate                  # the logging policy's own value (mean reward)
    estimates: dict[str, Estimate]    # "ips", "snips" and, with a reward model, "dr"
    effective_sample_size: float
    max_weight: float

    def to_json(self) -> dict[str, object]:
        return {"decisions": self.decisions, "logged_policy": self.logged.to_json(),
                **{name: e.to_json() for name, e in self.estimates.items()},
                "effective_sample_size": round(self.effective_sample_size, 1),
                "max_weight": round(self.max_weight, 4)}


def _interval(samples: np.ndarray, value: float) -> Estimate:
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    low, high = np.nanpercentile(samples, [tail, 100.0 - tail])
    return Estimate(float(value), float(low), float(high))


def evaluate_policy(rewards: np.ndarray, logged_propensity: np.ndarray, target_probability: np.ndarray,
                    rng: np.random.Generator, *, direct: np.ndarray | None = None,
                    logged_prediction: np.ndarray | None = None, bootstrap: int = BOOTSTRAP) -> OffPolicyReport:
    """IPS, SNIPS and (given a reward model) DR estimates of a target policy's mean reward.

    :param rewards: r_i of each logged decision.
    :param logged_propensity: mu_i, the logging policy's probability of the logged action.
    :param target_probability: pi_i, the target policy's probability of the logged action.
    :param direct: sum_a pi(a|x_i) q(x_i, a): the reward model's value of the target policy at x_i.
    :param logged_prediction: q(x_i, a_i), the reward model's prediction for the logged action.
    """
    n = len(rewards)
    if n == 0:
        raise ValueError("no logged decisions to evaluate")
    if np.any(logged_propensity <= 0):
        raise ValueError("every logged decision needs a positive propensity")
    weights = target_probability / logged_propensity
    terms = {"ips": weights * rewards}
    if direct is not None and logged_prediction is not None:
        terms["dr"] = direct + weights * (rewards - logged_prediction)
    columns = {**terms, "weights": weights, "rewards": rewards}
    sums = {name: np.empty(bootstrap) for name in columns}
    step = max(1, 2_000_000 // n)  # replicates per chunk: bounded memory
    for start in range(0, bootstrap, step):
        drawn = rng.integers(0, n, size=(min(step, bootstrap - start), n))
        for name, values in columns.items():
            sums[name][start:start + len(drawn)] = values[drawn].sum(axis=1)
    estimates: dict[str, Estimate] = {}
    for name, values in terms.items():
        estimates[name] = _interval(sums[name] / n, float(values.mean()))
    snips_samples = sums["ips"] / np.maximum(sums["weights"], 1e-12)
    estimates["snips"] = _interval(snips_samples, float((weights * rewards).sum() / max(weights.sum(), 1e-12)))
    logged = _interval(sums["rewards"] / n, float(rewards.mean()))
    ordered: dict[str, Estimate] = {name: estimates[name] for name in ("ips", "snips", "dr") if name in estimates}
    return OffPolicyReport(
        decisions=n, logged=logged, estimates=ordered,
        effective_sample_size=float(weights.sum() ** 2 / max(float((weights ** 2).sum()), 1e-12)),
        max_weight=float(weights.max()),
    )


def binned_reward_model(scores: np.ndarray, rewards: np.ndarray, folds: np.ndarray, bins: int = 10
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A cross-fitted reward model from scores: each fold's rewards predicted by the mean reward
    of the other folds' decisions in the same score decile. Returns (bin edges per fold, rates).

    Used by DR when the scorer's outputs are not probabilities (LambdaRank, popularity).
    """
    edges = np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]) if len(scores) else np.zeros(bins - 1)
    index = np.searchsorted(edges, scores)
    rates = np.zeros((int(folds.max()) + 1 if len(folds) else 1, bins))
    overall = rewards.mean() if len(rewards) else 0.0
    for fold in range(len(rates)):
        other = folds != fold
        sums = np.bincount(index[other], weights=rewards[other], minlength=bins)
        sizes = np.bincount(index[other], minlength=bins)
        rates[fold] = (sums + 1.0 * overall) / (sizes + 1.0)
    return edges, rates


def predict_binned(edges: np.ndarray, rates: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Predictions of :func:`binned_reward_model` for scores of shape (decisions, ...)."""
    index = np.searchsorted(edges, scores)
    fold = folds.reshape((-1,) + (1,) * (scores.ndim - 1))
    return np.asarray(rates[np.broadcast_to(fold, scores.shape), index])
