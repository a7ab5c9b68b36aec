"""The propensity interface: combining per-impression probabilities, and plugging in an item scorer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session

from engine.audience import propensity
from engine.audience.behaviour import RecipientFrame
from engine.audience.build import select_recipients
from engine.audience.propensity import CandidateItems, ItemScorePropensity, assign_tiers, combine_best
from engine.spec import CampaignSpec
from engine.spec.model import Tiers
from engine.store import Store
from tests.audience.test_audience_rules import NOW, campaign, seed


def test_combine_best_fills_the_slots_from_the_best_columns_within_their_capacity() -> None:
    p = np.array([[0.5, 0.1, 0.2], [0.0, 0.0, 0.0]])
    assert combine_best(p, np.ones(3), 2) == pytest.approx([1 - 0.5 * 0.8, 0.0])
    # one topic column holding two items takes both slots
    assert combine_best(p, np.array([2.0, 1.0, 1.0]), 2)[0] == pytest.approx(1 - 0.5 * 0.5)
    assert combine_best(p, np.ones(3), 5)[0] == pytest.approx(1 - 0.5 * 0.9 * 0.8)


def test_tiers_are_cumulative_top_shares() -> None:
    labels = assign_tiers(np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0]), Tiers(high=20, medium=50))
    assert labels.tolist() == ["low", "high", "medium", "low", "medium", "low", "high", "low", "medium", "low"]


class PreferenceScorer:
    """A stand-in for a learned ranker: recipient 'cy' loves tech items, everyone else is lukewarm."""

    name = "test-scorer-1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score_items(self, session: Session, recipient_ids: Sequence[str], items: CandidateItems,
                    spec: CampaignSpec, now: datetime) -> np.ndarray:
        self.calls.append(len(recipient_ids))
        tech = np.array([t == "tech" for t in items.topics])
        loves = np.array([r == "cy" for r in recipient_ids])
        return np.where(loves[:, None] & tech[None, :], 0.6, 0.05)


def test_a_learned_item_scorer_plugs_in_as_the_propensity_model(store: Store, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store, [{"id": name, "attributes": {}} for name in ("ann", "bob", "cy", "dee", "eve")], [])
    monkeypatch.setattr(propensity, "CHUNK", 2)
    scorer = PreferenceScorer()
    spec = campaign(tmp_path, "predicted = { top_percent = 20 }", "items = 2")
    with store.session() as session:
        selection = select_recipients(session, spec, NOW, ItemScorePropensity(scorer))
    assert selection.ids == ["cy"] and selection.model == "test-scorer-1"
    assert scorer.calls == [2, 2, 1]
    assert selection.scores is not None
    assert selection.scores[2] == pytest.approx(1 - 0.4 * 0.4)
    assert selection.scores[0] == pytest.approx(1 - 0.95 * 0.95)
    assert isinstance(selection.frame, RecipientFrame) and NOW.tzinfo is UTC
