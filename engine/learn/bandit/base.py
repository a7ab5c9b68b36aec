"""The interface of a variant policy: outcomes so far -> the probability of each arm now."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class VariantPolicy(ABC):
    """Chooses among a campaign's variants. Stateless: state is the outcome counts passed in.

    Implementations return *probabilities* rather than a pick, so the caller can both sample
    every recipient's variant in one vector operation and log the probability of what it chose.
    """

    name: str

    @abstractmethod
    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """P(arm) for each arm, given per-arm sends and goal events so far; sums to 1."""


def mix_exploration(probabilities: np.ndarray, exploration: float) -> np.ndarray:
    """Blend with uniform traffic so every arm keeps at least ``exploration / n`` of it."""
    n = len(probabilities)
    return np.asarray((1.0 - exploration) * probabilities + exploration / n)
