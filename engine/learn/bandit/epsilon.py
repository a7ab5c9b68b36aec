"""Epsilon-greedy: the arm with the best observed goal rate (the epsilon share is mixed in by
the caller from ``[optimize] exploration``)."""

from __future__ import annotations

import numpy as np

from engine.learn.bandit.base import VariantPolicy, argmax_distribution


class EpsilonGreedy(VariantPolicy):
    """Greedy on the smoothed rate (successes + 1) / (sends + 2), so unplayed arms start at 1/2."""

    name = "epsilon"

    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return argmax_distribution((np.minimum(successes, sends) + 1.0) / (sends + 2.0))
