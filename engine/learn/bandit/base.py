"""The interface of a variant policy: outcomes so far -> the probability of each arm now."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmOutcomes:
    """Per arm (variant): messages sent, and those followed by the goal, an unsubscribe or a
    complaint inside the attribution window. Carried across every run of the campaign.

    ``trials`` are the goal's effective trials when some messages are too recent for their goal
    to have arrived yet (see :mod:`engine.learn.outcomes`); None means every send is a whole trial.
    """

    sends: np.ndarray
    successes: np.ndarray
    unsubscribes: np.ndarray
    complaints: np.ndarray
    trials: np.ndarray | None = None

    @property
    def goal_trials(self) -> np.ndarray:
        """What the goal's rate is estimated over: ``trials``, or the sends."""
        return self.trials if self.trials is not None else self.sends

    @classmethod
    def empty(cls, arms: int) -> ArmOutcomes:
        return cls(*(np.zeros(arms) for _ in range(4)))


class VariantPolicy(ABC):
    """Chooses among a campaign's variants. Stateless: state is the outcome counts passed in.

    Implementations return *probabilities* rather than a pick, so the caller can both sample
    every recipient's variant in one vector operation and log the probability of what it chose.
    """

    name: str

    @abstractmethod
    def probabilities(self, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """P(arm) for each arm, given per-arm sends and goal events so far; sums to 1."""


def mix_exploration(probabilities: np.ndarray, exploration: float, allowed: np.ndarray | None = None) -> np.ndarray:
    """Blend with uniform traffic so every allowed arm keeps at least ``exploration / n`` of it."""
    allowed = np.ones(len(probabilities), dtype=bool) if allowed is None else allowed
    uniform = allowed / max(int(allowed.sum()), 1)
    return np.asarray((1.0 - exploration) * probabilities + exploration * uniform)


def argmax_distribution(values: np.ndarray) -> np.ndarray:
    """All the probability on the largest value (ties shared evenly)."""
    best = values == values.max()
    return np.asarray(best / best.sum())
