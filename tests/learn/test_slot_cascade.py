"""With taste segments, later slots are filled as if the items above them were not clicked."""

from __future__ import annotations

import numpy as np
import pytest

from engine.learn.exploration import SlotCascade, fill_slots

# Two segments: the first clicks topic A (items 0-2), the second topic B (items 3-5); item 6 is of
# a topic the segments were not fit on.
RATE = np.array([[0.5, 0.45, 0.4, 0.02, 0.02, 0.02, np.nan],
                 [0.02, 0.02, 0.02, 0.5, 0.45, 0.4, np.nan]])
POSTERIOR = np.array([[0.99, 0.01], [0.6, 0.4], [0.4, 0.6]])


def scores_of(posterior: np.ndarray) -> np.ndarray:
    """A segment-based ranker's scores: the log expected rate (the unknown topic scores low)."""
    known = np.log(posterior @ np.nan_to_num(RATE[:, :6]))
    return np.hstack([known, np.full((len(posterior), 1), -5.0)])


def at_least_one_click(posterior: np.ndarray, items: np.ndarray) -> np.ndarray:
    rate = np.nan_to_num(RATE)[:, items]   # (segments x recipients x slots)
    return np.asarray((posterior.T * (1.0 - np.prod(1.0 - rate, axis=2))).sum(axis=0))


def test_a_recipient_between_segments_gets_items_for_each_and_a_sure_one_the_same_list() -> None:
    cascade = SlotCascade.of(POSTERIOR, RATE)
    plain = fill_slots(scores_of(POSTERIOR), 3, np.random.default_rng(0), kind="epsilon", exploration=0.0,
                       temperature=1.0)
    cascaded = fill_slots(scores_of(POSTERIOR), 3, np.random.default_rng(0), kind="epsilon", exploration=0.0,
                          temperature=1.0, cascade=cascade)
    np.testing.assert_array_equal(plain.items, [[0, 1, 2], [0, 1, 2], [3, 4, 5]])
    assert cascaded.items[0].tolist() == [0, 1, 2]
    assert cascaded.items[1, 0] == 0 and set(cascaded.items[1, 1:]) & {3, 4, 5}
    assert cascaded.items[2, 0] == 3 and set(cascaded.items[2, 1:]) & {0, 1, 2}
    np.testing.assert_array_equal(cascaded.probability, 1.0)
    gain = at_least_one_click(POSTERIOR, cascaded.items) - at_least_one_click(POSTERIOR, plain.items)
    assert gain[0] == pytest.approx(0.0) and (gain[1:] > 0.05).all()


def test_the_first_slot_and_unknown_topics_keep_their_scores_and_probabilities_still_sum_to_one() -> None:
    cascade = SlotCascade.of(POSTERIOR, RATE)
    np.testing.assert_allclose(cascade.adjustment(POSTERIOR), 0.0, atol=1e-12)
    missed = cascade.missed(POSTERIOR, np.array([0, 0, -1]))
    assert missed[1, 1] > POSTERIOR[1, 1] and missed[2].tolist() == POSTERIOR[2].tolist()
    assert (cascade.adjustment(missed)[:, 6] == 0.0).all()
    picks = fill_slots(scores_of(POSTERIOR), 3, np.random.default_rng(1), kind="softmax", exploration=0.0,
                       temperature=0.5, with_candidates=True, cascade=cascade)
    assert picks.candidates is not None
    np.testing.assert_allclose(picks.candidates.sum(axis=2), 1.0)
    rows = np.arange(len(POSTERIOR))
    for slot in range(3):
        np.testing.assert_allclose(picks.probability[:, slot], picks.candidates[rows, slot, picks.items[:, slot]])
