"""A guardrail around any variant policy: pause arms that make people unsubscribe or complain.

An arm is paused once it has at least ``min_sends`` messages and its unsubscribe or complaint
rate is above the threshold; paused arms get no traffic (exploration included). If every arm is
paused, the one with the lowest combined rate keeps the traffic, so the campaign is not silently
stopped (and the pause is reported with the decision).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.learn.bandit.base import ArmOutcomes


@dataclass(frozen=True)
class Guardrail:
    unsubscribe_rate: float = 1.0
    complaint_rate: float = 1.0
    min_sends: int = 200

    def paused(self, outcomes: ArmOutcomes) -> np.ndarray:
        """True for each arm to pause."""
        sends = np.maximum(outcomes.sends, 1.0)
        enough = outcomes.sends >= self.min_sends
        over = (outcomes.unsubscribes / sends > self.unsubscribe_rate) | (outcomes.complaints / sends
                                                                          > self.complaint_rate)
        paused = enough & over
        if paused.all():
            combined = (outcomes.unsubscribes + outcomes.complaints) / sends
            paused[np.argmin(combined)] = False
        return np.asarray(paused)
