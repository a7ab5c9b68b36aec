"""Rates, their intervals, and the lift of treated over holdout, at 95%.

- A rate's interval is Wilson's score interval: unlike the normal ("Wald") interval it stays
  inside [0, 1] and keeps its coverage for small counts and rates near 0 — which goal rates are.
- The absolute lift (treated rate minus holdout rate) has Newcombe's hybrid score interval
  (Newcombe 1998, method 10), built from the two Wilson intervals; the lift is *significant*
  when that interval excludes 0.
- The relative lift (treated / holdout - 1) has the log risk-ratio (Katz) interval; it is not
  defined while either group has no goal at all.

A group with no members has rate 0 and no interval, so an empty campaign reports zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class Rate:
    """``hits`` of ``trials``, with Wilson's 95% interval (None when there are no trials)."""

    hits: int
    trials: int
    low: float | None
    high: float | None

    @property
    def value(self) -> float:
        return self.hits / self.trials if self.trials else 0.0


@dataclass(frozen=True)
class Lift:
    """Treated minus holdout, absolute (with Newcombe's interval) and relative (with Katz's)."""

    absolute: float | None
    low: float | None
    high: float | None
    relative: float | None
    relative_low: float | None
    relative_high: float | None

    @property
    def significant(self) -> bool:
        """True when the 95% interval of the absolute lift excludes zero."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def wilson(hits: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson 95% bounds of ``hits / trials``, elementwise (NaN where there are no trials)."""
    n = np.asarray(trials, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.asarray(hits, dtype=float) / n
        denominator = 1.0 + Z95**2 / n
        centre = (p + Z95**2 / (2 * n)) / denominator
        half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denominator
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def rates(hits: np.ndarray, trials: np.ndarray) -> list[Rate]:
    """A :class:`Rate` per element of the two count arrays."""
    low, high = wilson(hits, trials)
    return [Rate(int(h), int(n), float(lo) if n else None, float(hi) if n else None)
            for h, n, lo, hi in zip(np.asarray(hits).tolist(), np.asarray(trials).tolist(), low, high, strict=True)]


def rate(hits: int, trials: int) -> Rate:
    [found] = rates(np.array([hits]), np.array([trials]))
    return found


def lift(treated: Rate, holdout: Rate) -> Lift:
    """The lift of ``treated`` over ``holdout``; all None while either group is empty."""
    if not treated.trials or not holdout.trials:
        return Lift(None, None, None, None, None, None)
    assert treated.low is not None and treated.high is not None
    assert holdout.low is not None and holdout.high is not None
    p1, p2 = treated.value, holdout.value
    difference = p1 - p2
    low = difference - math.sqrt((p1 - treated.low) ** 2 + (holdout.high - p2) ** 2)
    high = difference + math.sqrt((treated.high - p1) ** 2 + (p2 - holdout.low) ** 2)
    relative = relative_low = relative_high = None
    if p2 > 0:
        relative = p1 / p2 - 1.0
    if treated.hits and holdout.hits:
        spread = Z95 * math.sqrt(1 / treated.hits - 1 / treated.trials + 1 / holdout.hits - 1 / holdout.trials)
        log_ratio = math.log(p1 / p2)
        relative_low, relative_high = math.exp(log_ratio - spread) - 1.0, math.exp(log_ratio + spread) - 1.0
    return Lift(difference, low, high, relative, relative_low, relative_high)
