"""On the simulator, with planted groups and tastes: personas recover the groups, and a predicted
audience finds more of the truly interested than the best attribute rule of the same size."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from engine.audience.build import select_recipients
from engine.audience.personas import build_personas, merge_small, rebuild_if_due, store_personas
from engine.sim import TOPICS, Population, make_catalog, make_population, seed_store, simulate_history
from engine.spec import CampaignSpec, load_campaign
from engine.store import Store
from engine.store.segments import build_segments, latest_build
from tests.conftest import ROOT

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Population]:
    rng = np.random.default_rng(11)
    population = make_population(900, rng, groups=4)
    catalog = make_catalog("news", 40, NOW, rng)
    history = simulate_history(population, catalog, weeks=26, items_per_message=6, now=NOW, rng=rng)
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('sim') / 'sim.db'}")
    seed_store(store, population, [catalog], history, NOW)
    return store, population


def test_personas_recover_the_planted_groups(simulated: tuple[Store, Population]) -> None:
    store, population = simulated
    with store.session() as session:
        personas = build_personas(session, NOW, np.random.default_rng(5), min_size=50)
    index = {r: i for i, r in enumerate(population.ids)}
    truth = population.group[[index[r] for r in personas.features.frame.ids]]
    clicked = personas.features.values[:, -1] < 180  # someone who never clicked shows no taste to recover
    assert clicked.mean() > 0.6
    assert adjusted_rand_score(truth[clicked], personas.assignment[clicked]) > 0.55
    assert adjusted_rand_score(truth, personas.assignment) > 0.3
    assert min(s.size for s in personas.segments) >= 50
    assert personas.silhouette is not None and 4 <= personas.k <= 8
    # each planted group's favourite topics name the segment most of its clicking members land in
    names = [s.name for s in personas.segments]
    for group in range(4):
        members = personas.assignment[clicked & (truth == group)]
        name = names[int(np.bincount(members).argmax())]
        assert TOPICS[2 * group] in name or TOPICS[2 * group + 1] in name, (group, name)


def test_personas_are_stored_as_versions_and_rebuilt_when_due(simulated: tuple[Store, Population]) -> None:
    store, _ = simulated
    with store.session() as session:
        personas = build_personas(session, NOW, np.random.default_rng(5), min_size=120)
        first = store_personas(session, personas, NOW)
    with store.session() as session:
        every = timedelta(days=1)
        assert rebuild_if_due(session, NOW + timedelta(hours=23), every, np.random.default_rng(5), min_size=120) \
            is None
        second = rebuild_if_due(session, NOW + every, every, np.random.default_rng(5), min_size=120)
    assert second == first + 1
    with store.session() as session:
        build = latest_build(session)
        assert build is not None and build.version == second
        sizes = [s.size for s in build_segments(session, first)]
        assert sum(sizes) == 900 and min(sizes) >= 120


def test_merge_small_folds_clusters_into_the_nearest() -> None:
    z = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2], [4.0]])
    merged = merge_small(z, np.array([0, 0, 0, 1, 1, 1, 2]), min_size=2)
    assert merged.tolist() == [0, 0, 0, 1, 1, 1, 1]


def spec(tmp_path: Path, audience: str) -> CampaignSpec:
    path = tmp_path / "sports.toml"
    path.write_text(textwrap.dedent(f"""
        [campaign]
        name = "sports-news"
        goal = "click"

        [audience]
        {audience}

        [content]
        pool = "news"
        where = "topic == 'sports'"
        items = 2

        [[variants]]
        name = "a"
        subject = "Sports"
        template = "digest"
    """))
    return load_campaign(path, ROOT / "templates")


def test_a_predicted_audience_beats_the_best_attribute_rule_of_the_same_size(
        simulated: tuple[Store, Population], tmp_path: Path) -> None:
    store, population = simulated
    # the truly interested: the fifth most likely to click a sports story (hidden taste x engagement)
    appetite = population.taste[:, TOPICS.index("sports")] * population.engagement
    interested = {population.ids[i] for i in np.argsort(-appetite)[:len(population) // 5]}
    rules = ["attributes.plan == 'pro'", "attributes.plan == 'free'"]
    rules += [f"timezone == '{zone}'" for zone in sorted(set(population.zone))]
    rules += [f"attributes.plan == '{plan}' and timezone == '{zone}'"
              for plan in ("pro", "free") for zone in sorted(set(population.zone))]
    best: tuple[float, list[str], str] | None = None
    with store.session() as session:
        for rule in rules:
            ids = select_recipients(session, spec(tmp_path, f'where = "{rule}"'), NOW).ids
            if len(ids) < len(population) // 20:
                continue
            precision = len(interested.intersection(ids)) / len(ids)
            if best is None or precision > best[0]:
                best = (precision, ids, rule)
        assert best is not None
        _, rule_ids, rule = best
        percent = 100.0 * len(rule_ids) / len(population)
        predicted = select_recipients(session, spec(tmp_path, f"predicted = {{ top_percent = {percent} }}"), NOW)
    assert len(predicted.ids) == len(rule_ids)
    found_by_rule = len(interested.intersection(rule_ids))
    found_by_prediction = len(interested.intersection(predicted.ids))
    assert found_by_prediction > 1.5 * found_by_rule, (rule, found_by_rule, found_by_prediction)
