"""``[optimize] exploration_decay``: exploration shrinks as the evidence behind a choice grows."""

from __future__ import annotations

import numpy as np
import pytest

from engine.learn.exploration import decayed_exploration, fill_slots
from engine.learn.ranker import PopularityScorer


def test_the_share_halves_at_three_times_the_decay_and_is_constant_without_one() -> None:
    assert decayed_exploration(0.1, 0, 1000) == 0.1
    assert decayed_exploration(0.1, 3000, 1000) == pytest.approx(0.05)
    assert decayed_exploration(0.1, 99_000, 1000) == pytest.approx(0.01)
    assert decayed_exploration(0.1, 10**9, None) == 0.1
    assert decayed_exploration(0.1, -5, 1000) == 0.1  # no negative evidence
    assert PopularityScorer().evidence == 0.0  # a fallback has learned nothing: full exploration


def test_decayed_item_exploration_keeps_every_item_possible_but_rarer() -> None:
    scores = np.tile(np.arange(10.0), (2000, 1))
    full = fill_slots(scores, 1, np.random.default_rng(0), kind="epsilon", exploration=0.2, temperature=1.0,
                      with_candidates=True)
    shrunk = fill_slots(scores, 1, np.random.default_rng(0), kind="epsilon",
                        exploration=decayed_exploration(0.2, 3000, 1000), temperature=1.0, with_candidates=True)
    assert full.candidates is not None and shrunk.candidates is not None
    np.testing.assert_allclose(shrunk.candidates[0, 0, :9], 0.01)
    np.testing.assert_allclose(full.candidates[0, 0, :9], 0.02)
    assert (shrunk.items[:, 0] != 9).mean() < (full.items[:, 0] != 9).mean()
