"""A staged test for one-off sends: explore evenly on a first share, wait, then exploit.

During the explore stage (until ``wait`` after the campaign's first send) every arm gets the
same traffic. After it, all traffic goes to the arm with the best posterior mean goal rate,
Beta(1 + successes, 1 + failures), with ``[optimize] exploration`` mixed in by the caller.
Planning sends the explore share first and holds the rest back by ``wait``.
"""

from __future__ import annotations

import numpy as np

from engine.learn.bandit.base import VariantPolicy, argmax_distribution


class StagedTest(VariantPolicy):
    name = "staged"

    def __init__(self, exploiting: bool = False) -> None:
        self.exploiting = exploiting

    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.exploiting:
            return np.full(len(sends), 1.0 / len(sends))
        return argmax_distribution((1.0 + np.minimum(successes, sends)) / (2.0 + sends))
