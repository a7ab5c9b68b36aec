"""UCB1: play the arm with the highest upper confidence bound on its goal rate."""

from __future__ import annotations

import numpy as np

from engine.learn.bandit.base import VariantPolicy, argmax_distribution


class UpperConfidenceBound(VariantPolicy):
    """Deterministic given the counts: mean + sqrt(2 ln N / n) (an unplayed arm goes first).

    All traffic of a batch goes to one arm (ties split); ``[optimize] exploration`` mixes in the
    uniform share, which is also what keeps the logged probabilities usable off-policy.
    """

    name = "ucb"

    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if (sends == 0).any():
            return argmax_distribution((sends == 0).astype(float))
        mean = np.minimum(successes, sends) / sends
        bound = mean + np.sqrt(2.0 * np.log(sends.sum()) / sends)
        return argmax_distribution(bound)
