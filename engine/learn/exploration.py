"""Item exploration: fill a message's slots from ranker scores, logging each pick's probability.

Slots are filled in order. In each slot every remaining item (not yet placed, within the
diversity cap) has a probability, and one is drawn from them; the logged probability of an item
in a slot is its chance *given the items placed in earlier slots*, so per slot the candidates'
probabilities sum to 1 and the product over slots is the probability of the whole list.

- ``epsilon``: the best remaining item with probability 1 - exploration, plus exploration
  spread evenly over all remaining items.
- ``softmax``: P(item) proportional to exp(z / temperature), where z is the item's score
  standardized over the recipient's candidates (so the temperature does not depend on the
  scale of the ranker's scores); lower temperatures exploit more.

Everything is vectorized over recipients; the only loop is over the (few) slots.

A message reaches its goal when *any* of its items does, and tastes are correlated: someone who
does not click the first item of a topic will likely not click the second either. With the
ranker's taste segments (:class:`SlotCascade`), each slot after the first is filled as if the
items above it were not clicked (the only case in which it matters): the recipient's segment
posterior is updated by those misses, and every remaining item's score moves by the log of its
expected click rate under the updated posterior over that under the original one. That is the
greedy choice for the chance of at least one click: a recipient sure of their tastes gets the
same list as before, one between two segments gets items for each.

Exploration buys evidence; once there is plenty, the same share keeps paying for what is known.
With ``[optimize] exploration_decay`` N, each choice (items, channel, variant, send hour) uses
:func:`decayed_exploration` of the campaign's share, from the evidence behind that choice. Items
an item guard eliminated (proven worse than its default at the campaign's confidence, and better
for no one) get no exploration at all (``explorable``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITEM_EXPLORATION = ("epsilon", "softmax")


@dataclass(frozen=True)
class SlotPicks:
    """The filled slots of every recipient of a batch."""

    items: np.ndarray          # (recipients x slots) item index, -1 for an empty slot
    probability: np.ndarray    # (recipients x slots) conditional probability of that pick
    candidates: np.ndarray | None  # (recipients x slots x items) every item's probability, if asked


@dataclass(frozen=True)
class SlotCascade:
    """The taste segments behind a batch's scores (see the module docstring); build it with
    :meth:`of`."""

    posterior: np.ndarray    # (recipients x segments) P(segment | what the recipient did)
    rate: np.ndarray         # (segments x items) click rate of each item in each segment (0: unknown)
    known: np.ndarray        # (items,) whether the segments know the item's topic
    log_expected: np.ndarray  # (recipients x items) log expected rate under ``posterior``

    @classmethod
    def of(cls, posterior: np.ndarray, rate: np.ndarray) -> SlotCascade:
        """:param rate: (segments x items), NaN for items of topics the segments were not fit on."""
        known = np.isfinite(rate).all(axis=0)
        rate = np.where(known[None, :], rate, 0.0)
        with np.errstate(divide="ignore"):
            log_expected = np.log(posterior @ rate)
        return cls(posterior, rate, known, log_expected)

    def adjustment(self, weights: np.ndarray) -> np.ndarray:
        """(recipients x items) the change of each item's log expected rate from the original
        posterior to ``weights`` (0 for items of topics the segments do not know)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.log(weights @ self.rate) - self.log_expected
        return np.asarray(np.where(self.known[None, :] & np.isfinite(change), change, 0.0))

    def missed(self, weights: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """The posterior after each recipient did not click their ``chosen`` item (-1: none)."""
        rate = np.where(chosen[:, None] >= 0, self.rate[:, chosen.clip(0)].T, 0.0)
        updated = weights * (1.0 - rate)
        total = updated.sum(axis=1, keepdims=True)
        return np.asarray(np.where(total > 0, updated / np.where(total > 0, total, 1.0), weights))


def slot_distribution(scores: np.ndarray, available: np.ndarray, kind: str, exploration: float,
                      temperature: float, explorable: np.ndarray | None = None) -> np.ndarray:
    """(recipients x items) probability of each item in the next slot; rows with nothing available are 0.

    :param explorable: (items,) False for items exploration should not spend traffic on (an item
        guard's eliminated items): they are picked only as a row's best item, and rows where no
        available item is explorable explore over every available one.
    """
    n_available = available.sum(axis=1)
    active = n_available > 0
    best = np.where(available, scores, -np.inf).argmax(axis=1)
    explore = available
    if explorable is not None:
        narrowed = available & explorable[None, :]
        explore = np.where(narrowed.any(axis=1)[:, None], narrowed, available)
        explore[np.arange(len(scores)), best] |= active
    if kind == "softmax":
        masked = np.where(explore, scores, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nanmean(np.where(active[:, None], masked, 0.0), axis=1, keepdims=True)
            spread = np.nanstd(np.where(active[:, None], masked, 0.0), axis=1, keepdims=True)
        z = (scores - mean) / np.where(spread > 1e-12, spread, 1.0)
        logits = np.where(explore, z / temperature, -np.inf)
        top = np.max(np.where(active[:, None], logits, 0.0), axis=1, keepdims=True)
        weights = np.where(explore, np.exp(logits - top), 0.0)
        total = weights.sum(axis=1, keepdims=True)
        return np.asarray(np.where(active[:, None], weights / np.where(total > 0, total, 1.0), 0.0))
    share = np.where(active, exploration / np.maximum(explore.sum(axis=1), 1), 0.0)
    distribution = np.where(explore, share[:, None], 0.0)
    distribution[np.arange(len(scores)), best] += (1.0 - exploration) * active
    return distribution


def draw(distribution: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row drawn from each row's distribution (inverse CDF; -1 for empty rows)."""
    cumulative = np.cumsum(distribution, axis=1)
    total = cumulative[:, -1] if distribution.shape[1] else np.zeros(len(distribution))
    u = rng.random(len(distribution)) * total
    chosen = (cumulative <= u[:, None]).sum(axis=1)
    chosen = np.minimum(chosen, distribution.shape[1] - 1)
    # Never land on a zero-probability item through rounding at the top of the CDF.
    zero = distribution[np.arange(len(distribution)), chosen.clip(0)] <= 0
    if zero.any():
        chosen[zero] = distribution[zero].argmax(axis=1)
    return np.asarray(np.where(total > 0, chosen, -1))


def fill_slots(scores: np.ndarray, slots: int, rng: np.random.Generator, *, kind: str, exploration: float,
               temperature: float, topic_codes: np.ndarray | None = None, max_per_topic: int | None = None,
               with_candidates: bool = False, eligible: np.ndarray | None = None,
               explorable: np.ndarray | None = None, cascade: SlotCascade | None = None) -> SlotPicks:
    """Fill ``slots`` slots for every row of ``scores`` (recipients x items).

    :param topic_codes: each item's topic, with ``max_per_topic`` the diversity cap per message.
    :param eligible: (recipients x items) items that may be picked at all (default: every item).
    :param explorable: (items,) items exploration may spend traffic on (see :func:`slot_distribution`).
    :param cascade: the taste segments behind ``scores``: later slots are scored as if the
        earlier ones were not clicked.
    """
    n, m = scores.shape
    k = min(slots, m)
    available = np.ones((n, m), dtype=bool) if eligible is None else eligible.copy()
    items = np.full((n, k), -1, dtype=np.int64)
    probability = np.zeros((n, k))
    candidates = np.zeros((n, k, m)) if with_candidates else None
    per_topic = np.zeros((n, int(topic_codes.max()) + 1 if topic_codes is not None and m else 1), dtype=np.int64)
    rows = np.arange(n)
    weights = cascade.posterior if cascade is not None else None
    for slot in range(k):
        slot_scores = scores
        if cascade is not None and weights is not None and slot > 0:
            slot_scores = scores + cascade.adjustment(weights)
        distribution = slot_distribution(slot_scores, available, kind, exploration, temperature, explorable)
        chosen = draw(distribution, rng)
        picked = chosen >= 0
        items[:, slot] = chosen
        probability[:, slot] = np.where(picked, distribution[rows, chosen.clip(0)], 0.0)
        if candidates is not None:
            candidates[:, slot, :] = distribution
        available[rows[picked], chosen[picked]] = False
        if topic_codes is not None and max_per_topic is not None:
            per_topic[rows[picked], topic_codes[chosen[picked]]] += 1
            available &= per_topic[:, topic_codes] < max_per_topic
        if cascade is not None and weights is not None:
            weights = cascade.missed(weights, chosen)
    return SlotPicks(items, probability, candidates)


def decayed_exploration(exploration: float, evidence: float, decay: int | None) -> float:
    """The exploration share to use after ``evidence`` logged decisions: ``exploration`` while there
    are none, then exploration * sqrt(decay / (decay + evidence)) — halved at three times ``decay``,
    a tenth at 99 times; ``exploration`` itself without a decay."""
    if decay is None:
        return exploration
    return float(exploration * np.sqrt(decay / (decay + max(evidence, 0.0))))
