"""No optimization: every variant gets an equal share (a classic A/B/n split)."""

from __future__ import annotations

import numpy as np

from engine.learn.bandit.base import VariantPolicy


class UniformSplit(VariantPolicy):
    name = "none"

    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.full(len(sends), 1.0 / len(sends))
