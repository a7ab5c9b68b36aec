"""Channel choice: the predicted goal rate of each allowed channel per recipient, with exploration.

Each recipient's rate on a channel is their engagement there (opens and clicks per message on
that channel, over the feature horizon) smoothed toward the channel's population rate, so a
recipient never reached on push is predicted at push's average. Only channels the recipient can
be reached on (consent and an address or device) are candidates. The best gets 1 - exploration
of the probability and every reachable channel an equal share of exploration; the chosen
channel's probability is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.features.events import CHANNELS
from engine.features.recipients import BASE_NAMES, RecipientFeatures


@dataclass(frozen=True)
class ChannelChoice:
    channel: np.ndarray       # (recipients,) index into the campaign's channels, -1 when none is reachable
    probability: np.ndarray   # (recipients,)
    predicted: np.ndarray     # (recipients x channels) predicted engagement rate


def predicted_rates(features: RecipientFeatures, channels: Sequence[str]) -> np.ndarray:
    """(recipients x channels) smoothed engagement rate per message on each channel."""
    columns = [BASE_NAMES.index(f"engagement_{c}") if c in CHANNELS else -1 for c in channels]
    values = features.values
    return np.column_stack([values[:, j] if j >= 0 else np.full(len(values), np.nan) for j in columns]) \
        if columns else np.zeros((len(values), 0))


def choose_channels(predicted: np.ndarray, reachable: np.ndarray, exploration: float,
                    rng: np.random.Generator) -> ChannelChoice:
    """Pick a channel per recipient among the reachable ones (see the module docstring)."""
    n, c = reachable.shape
    count = reachable.sum(axis=1)
    best = np.where(reachable, np.nan_to_num(predicted, nan=-1.0), -np.inf).argmax(axis=1) if c else np.zeros(
        n, dtype=np.int64)
    share = np.asarray(exploration / np.maximum(count, 1))
    distribution = np.where(reachable, share[:, None], 0.0)
    distribution[np.arange(n), best] += (1.0 - exploration) * (count > 0)
    cumulative = np.cumsum(distribution, axis=1)
    u = np.asarray(rng.random(n))
    chosen = np.minimum((cumulative <= u[:, None]).sum(axis=1), max(c - 1, 0))
    zero = distribution[np.arange(n), chosen] <= 0
    chosen[zero] = best[zero]
    chosen = np.where(count > 0, chosen, -1)
    probability = np.where(chosen >= 0, distribution[np.arange(n), chosen.clip(0)], 0.0)
    return ChannelChoice(chosen, probability, predicted)
