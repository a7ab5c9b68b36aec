"""Thompson sampling over Beta-Bernoulli arms."""

from __future__ import annotations

import numpy as np

from engine.learn.bandit.base import VariantPolicy


class ThompsonSampler(VariantPolicy):
    """Each arm's goal rate ~ Beta(1 + successes, 1 + failures); P(arm) = P(its draw is largest).

    That probability has no closed form for more than two arms, so it is estimated from
    ``draws`` joint posterior samples: exact enough to log and to weight off-policy estimates,
    and the same distribution per-recipient Thompson draws would give.

    :param draws: posterior samples used to estimate the arm probabilities.
    """

    name = "thompson"

    def __init__(self, draws: int = 4000) -> None:
        self.draws = draws

    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        successes = np.minimum(successes, sends)
        samples = rng.beta(1.0 + successes, 1.0 + sends - successes, size=(self.draws, len(sends)))
        wins = np.bincount(samples.argmax(axis=1), minlength=len(sends))
        return np.asarray(wins / self.draws)
