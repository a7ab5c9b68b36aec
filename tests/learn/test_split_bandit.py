"""A bandit per persona (``optimize.split_by``): each group finds its own winning variant.

Planted: "bold" wins with bargain hunters and "calm" with news readers, by as much each way, so
pooled over everyone the two look alike. The campaign-wide bandit stays near even; the split one
sends most bargain hunters "bold" and most news readers "calm", and logs each recipient's group
and the probability their own group's bandit gave the variant they got.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.decide import Policy
from engine.errors import SpecError
from engine.spec import load_campaign
from engine.store import ContentItem, Event, Recipient, Store, queries
from engine.store.db import upsert
from engine.store.segments import SegmentProfile, save_build
from tests.learn.test_bandit import write_campaign

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
RATES = {("bargain-hunters", "a"): 0.35, ("bargain-hunters", "b"): 0.10,
         ("news-readers", "a"): 0.10, ("news-readers", "b"): 0.35}


def plant(store: Store) -> dict[str, str]:
    """100 messages per (segment, variant), exactly the planted share of them clicked."""
    segment_of = {f"r{n:03d}": ("bargain-hunters" if n % 2 else "news-readers") for n in range(400)}
    events: list[dict[str, Any]] = []
    sent: dict[tuple[str, str], int] = {}
    for message, (recipient, segment) in enumerate(segment_of.items()):
        variant = "ab"[message // 2 % 2]
        cell = (segment, variant)
        sent[cell] = sent.get(cell, 0) + 1
        base = {"recipient_id": recipient, "campaign": "promo", "variant": variant, "message_id": message}
        events.append({**base, "id": f"s{message}", "type": "sent", "ts": NOW - timedelta(hours=30), "position": 0})
        if sent[cell] <= RATES[cell] * 100:
            events.append({**base, "id": f"c{message}", "type": "click", "ts": NOW - timedelta(hours=29)})
    with store.session() as session:
        session.add_all(Recipient(id=r, email=f"{r}@example.test") for r in segment_of)
        session.add_all(ContentItem(id=f"i{n}", pool="p", title=f"Item {n}", url=f"https://x.test/{n}",
                                    topic="news", published_at=NOW - timedelta(days=1)) for n in range(3))
        save_build(session, built_at=NOW, method="kmeans", k=2, silhouette=0.4, min_size=1, features=[],
                   segments=[SegmentProfile("bargain-hunters", 200, {}), SegmentProfile("news-readers", 200, {})],
                   recipient_ids=list(segment_of), labels=list(segment_of.values()))
        upsert(session, Event, events, ["id"])
    return segment_of


def decide_everyone(store: Store, spec_path: Path, templates: Path, segment_of: dict[str, str],
                    rounds: int) -> dict[str, list[tuple[str, float, Any]]]:
    """Decide for everyone ``rounds`` times; per segment the (variant, probability, group) drawn."""
    spec = load_campaign(spec_path, templates)
    policy = Policy(spec, np.random.default_rng(5))
    drawn: dict[str, list[tuple[str, float, Any]]] = {"bargain-hunters": [], "news-readers": []}
    with store.session() as session:
        rows = list(queries.recipients_by_id(session, list(segment_of)).values())
        for _ in range(rounds):
            for decision in policy.decide(session, rows, NOW):
                drawn[segment_of[decision.recipient_id]].append(
                    (decision.variant, decision.variant_probability, decision.log().get("experiment_group")))
    return drawn


def share(drawn: list[tuple[str, float, Any]], variant: str) -> float:
    return sum(v == variant for v, _, _ in drawn) / len(drawn)


def test_each_persona_gets_its_own_winner_and_the_group_is_logged(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    segment_of = plant(store)
    split = decide_everyone(store, write_campaign(tmp_path / "split", 'split_by = "segment"'),
                            tmp_path / "split" / "templates", segment_of, rounds=3)
    assert share(split["bargain-hunters"], "a") > 0.9
    assert share(split["news-readers"], "b") > 0.9
    assert {g for _, _, g in split["bargain-hunters"]} == {"bargain-hunters"}
    assert {g for _, _, g in split["news-readers"]} == {"news-readers"}
    # the logged probability is the group's: within a group (one batch) a variant has one value
    # per decision call, and a rarely drawn variant has a small one
    rare = [p for v, p, _ in split["bargain-hunters"] if v == "b"]
    assert all(p < 0.2 for p in rare)

    pooled = decide_everyone(store, write_campaign(tmp_path / "pooled"), tmp_path / "pooled" / "templates",
                             segment_of, rounds=3)
    everyone = pooled["bargain-hunters"] + pooled["news-readers"]
    assert 0.3 < share(everyone, "a") < 0.7  # pooled, the variants are alike (45 of 200 each)
    assert all(g is None for _, _, g in everyone)


def test_a_new_persona_starts_from_the_campaigns_evidence(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    plant(store)
    with store.session() as session:  # a newcomer in no segment yet
        session.add(Recipient(id="new", email="new@example.test"))
    spec = load_campaign(write_campaign(tmp_path, 'split_by = "segment"'), tmp_path / "templates")
    policy = Policy(spec, np.random.default_rng(0))
    with store.session() as session:
        groups = policy.experiment_groups(session, NOW)
        outcomes, _ = policy.arm_outcomes(session, NOW)
    assert groups is not None and "new" not in groups.labels
    assert groups.outcomes["bargain-hunters"].sends.sum() == 200
    newcomer = groups.within("(none)", outcomes)
    np.testing.assert_allclose(newcomer.sends, [20.0, 20.0])
    np.testing.assert_allclose(newcomer.successes / newcomer.sends,
                               (outcomes.successes + 1) / (outcomes.sends + 2))


@pytest.mark.parametrize(("extra", "problem"), [
    ('split_by = "planet"', "expected one of 'segment', 'tier'"),
    ('bandit = "none"\nsplit_by = "segment"', "needs a bandit to split; bandit is 'none'"),
])
def test_a_bad_split_is_refused_with_its_line(tmp_path: Path, extra: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_campaign(write_campaign(tmp_path, extra), tmp_path / "templates")
    assert caught.value.field == "optimize.split_by" and problem in str(caught.value)
    assert caught.value.line is not None
