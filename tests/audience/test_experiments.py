"""Experiments inside segments: a variant that wins with one persona can lose with another."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.audience.experiments import group_labels, split_posteriors
from engine.sim import make_catalog, make_population, seed_store, simulate_history
from engine.spec import load_campaign
from engine.store import Event, Store
from engine.store.db import upsert
from engine.store.segments import SegmentProfile, save_build
from tests.conftest import ROOT, Project

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CAMPAIGN = """
    [campaign]
    name = "promo"
    goal = "click"

    [content]
    pool = "news"

    [[variants]]
    name = "bold"
    subject = "Bold"
    template = "digest"

    [[variants]]
    name = "calm"
    subject = "Calm"
    template = "digest"
"""


def outcomes(segment_of: dict[str, str], rates: dict[tuple[str, str], float], rng: np.random.Generator
             ) -> list[dict[str, Any]]:
    """Each recipient gets one message per variant; clicks follow the planted (segment, variant) rate."""
    events: list[dict[str, Any]] = []
    message = 0
    for recipient, segment in segment_of.items():
        for variant in ("bold", "calm"):
            message += 1
            base = {"recipient_id": recipient, "campaign": "promo", "variant": variant, "message_id": message}
            events.append({**base, "id": f"s{message}", "type": "sent", "ts": NOW - timedelta(days=2)})
            if rng.random() < rates[(segment, variant)]:
                events.append({**base, "id": f"c{message}", "type": "click", "ts": NOW - timedelta(days=1)})
    return events


def test_posteriors_split_by_segment_show_opposite_winners(store: Store, tmp_path: Any) -> None:
    (tmp_path / "promo.toml").write_text(textwrap.dedent(CAMPAIGN))
    spec = load_campaign(tmp_path / "promo.toml", ROOT / "templates")
    segment_of = {f"r{n:03d}": ("bargain-hunters" if n % 2 else "news-readers") for n in range(400)}
    rates = {("bargain-hunters", "bold"): 0.35, ("bargain-hunters", "calm"): 0.10,
             ("news-readers", "bold"): 0.08, ("news-readers", "calm"): 0.30}
    with store.session() as session:
        save_build(session, built_at=NOW, method="kmeans", k=2, silhouette=0.4, min_size=1, features=[],
                   segments=[SegmentProfile("bargain-hunters", 200, {}), SegmentProfile("news-readers", 200, {})],
                   recipient_ids=list(segment_of), labels=list(segment_of.values()))
        upsert(session, Event, outcomes(segment_of, rates, np.random.default_rng(3)), ["id"])
    with store.session() as session:
        labels = group_labels(session, spec, "segment", NOW)
        arms = {(a.group, a.variant): a for a in split_posteriors(session, spec, labels, np.random.default_rng(0))}
    assert {a.sends for a in arms.values()} == {200}
    assert arms[("bargain-hunters", "bold")].p_best > 0.99
    assert arms[("news-readers", "calm")].p_best > 0.99
    hunters = arms[("bargain-hunters", "bold")]
    assert hunters.low < hunters.mean < hunters.high and hunters.low > arms[("bargain-hunters", "calm")].high
    # pooled over everyone the two variants look alike: the split is what shows the difference
    pooled = {v: sum(arms[(g, v)].goals for g in ("bargain-hunters", "news-readers")) for v in ("bold", "calm")}
    assert abs(pooled["bold"] - pooled["calm"]) < 30


def test_segments_commands_build_show_and_split_by_tier(project: Project) -> None:
    rng = np.random.default_rng(2)
    population = make_population(300, rng, groups=3)
    catalog = make_catalog("news", 24, NOW, rng)
    history = simulate_history(population, catalog, weeks=8, items_per_message=4, now=NOW, rng=rng)
    store = project.store()
    seed_store(store, population, [catalog], history, NOW)
    store.dispose()
    project.write("campaigns/promo.toml", CAMPAIGN)

    built = project.kairos("segments", "build", "--min-size", "40", "--seed", "1", check=True)
    assert "segments version 1: 300 recipients in" in built.stdout
    assert "current" in project.kairos("segments", "build", "--if-due", check=True).stdout
    shown = project.kairos("segments", "show", check=True)
    assert "segments version 1: 300 recipients" in shown.stdout and "z=+" in shown.stdout
    split = project.kairos("segments", "show", "--campaign", "promo", "--by", "tier", check=True)
    assert "promo: goal click, by tier" in split.stdout
    assert "no messages of this campaign yet" in split.stdout
    wrong = project.kairos("segments", "show", "--by", "planet")
    assert wrong.returncode == 2 and "--by: expected one of segment, tier" in wrong.stderr
