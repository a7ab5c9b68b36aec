"""Decisions are logged with consistent probabilities: per slot they sum to 1, the logged one is
the drawn one's, and drawing many times reproduces them. The channel is chosen among reachable
ones, and ``kairos plan --candidates`` writes all of it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from engine.decide import Policy
from engine.learn.channel import choose_channels
from engine.learn.exploration import fill_slots
from engine.sim import seed_store
from tests.conftest import Project
from tests.learn.simworld import small_world


@pytest.mark.parametrize("kind", ["epsilon", "softmax"])
def test_per_slot_probabilities_sum_to_one_and_match_the_draws(kind: str) -> None:
    rng = np.random.default_rng(4)
    scores = np.tile(rng.normal(size=8), (40000, 1))  # one recipient's scores, decided 40,000 times
    topics = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    picks = fill_slots(scores, 3, rng, kind=kind, exploration=0.2, temperature=0.7, topic_codes=topics,
                       max_per_topic=1, with_candidates=True)
    assert picks.candidates is not None
    np.testing.assert_allclose(picks.candidates.sum(axis=2), 1.0)
    rows = np.arange(len(scores))
    for slot in range(3):
        np.testing.assert_allclose(picks.probability[:, slot], picks.candidates[rows, slot, picks.items[:, slot]])
    # Diversity: never two items of one topic in a message, and a capped topic has probability 0.
    assert all(len(set(topics[row])) == 3 for row in picks.items[:500])
    # The first slot's logged distribution is what the draws do.
    counts = np.bincount(picks.items[:, 0], minlength=8) / len(scores)
    np.testing.assert_allclose(counts, picks.candidates[0, 0], atol=0.01)
    # Later slots: frequencies given the same earlier pick match the conditional probabilities.
    first = picks.items[:, 0] == picks.items[0, 0]
    counts = np.bincount(picks.items[first, 1], minlength=8) / first.sum()
    np.testing.assert_allclose(counts, picks.candidates[np.flatnonzero(first)[0], 1], atol=0.015)
    # The probability of a whole list is the product of its slots' (the chain rule).
    lists = Counter(map(tuple, picks.items))
    common, times = lists.most_common(1)[0]
    row = next(i for i, items in enumerate(picks.items) if tuple(items) == common)
    assert times / len(scores) == pytest.approx(np.prod(picks.probability[row]), abs=0.01)


def test_channel_choice_stays_within_reach_and_logs_its_probability() -> None:
    predicted = np.array([[0.2, 0.5], [0.6, 0.1], [0.3, 0.9], [0.3, 0.9]])
    reachable = np.array([[True, True], [True, True], [True, False], [False, False]])
    choice = choose_channels(predicted, reachable, 0.1, np.random.default_rng(0))
    assert choice.channel[2] == 0 and choice.probability[2] == 1.0  # push predicted better, but no consent
    assert choice.channel[3] == -1 and choice.probability[3] == 0.0  # nothing reachable: no message
    many = choose_channels(np.repeat(predicted[:1], 20000, axis=0), np.repeat(reachable[:1], 20000, axis=0), 0.1,
                           np.random.default_rng(1))
    assert np.mean(many.channel == 1) == pytest.approx(0.95, abs=0.01)
    np.testing.assert_allclose(many.probability[many.channel == 1], 0.95)
    np.testing.assert_allclose(many.probability[many.channel == 0], 0.05)


def test_policy_decisions_and_plan_candidates_are_consistent(project: Project) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    world = small_world(size=300, weeks=3, seed=9, start=now - timedelta(hours=1))
    seed_store(project.store(), world.population, [world.catalog], world.history, now)
    project.write("campaigns/picks.toml", """
        [campaign]
        name = "picks"
        goal = "click"

        [content]
        pool = "articles"
        items = 3
        diversity = { by = "topic", max_per_topic = 1 }

        [[variants]]
        name = "a"
        subject = "A"
        template = "digest"

        [[variants]]
        name = "b"
        subject = "B"
        template = "digest"

        [optimize]
        item_exploration = "softmax"
        temperature = 0.5
        exploration = 0.1
    """)
    result = project.kairos("plan", "picks", "--candidates", "--seed", "2", check=True)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    sending = [r for r in rows if r["status"] == "send"]
    assert len(sending) == int(world.population.consent_email.sum())
    for row in sending:
        by_slot: dict[int, float] = {}
        for candidate in row["candidates"]:
            by_slot[candidate["slot"]] = by_slot.get(candidate["slot"], 0.0) + candidate["probability"]
        assert sorted(by_slot) == [0, 1, 2]
        assert all(total == pytest.approx(1.0) for total in by_slot.values())
        chosen = {(c["id"], c["slot"]): c["probability"] for c in row["candidates"]}
        for item in row["items"]:
            assert item["probability"] == pytest.approx(chosen[(item["id"], item["slot"])])
        assert row["propensity"] == pytest.approx(np.prod([i["probability"] for i in row["items"]])
                                                  * row["channel_probability"] * row["variant_probability"])
        assert row["model_versions"]["ranker"] == "popularity-affinity-2"  # nothing trained yet


def test_the_policy_logs_what_it_decided_with(project: Project) -> None:
    # A fixed moment: how many recipients share every feature depends on the hour (which of the
    # history's sends, made at whole hours, fall inside the 7-day window).
    now = datetime(2026, 11, 2, 13, 30, tzinfo=UTC)
    world = small_world(size=200, weeks=2, seed=10, start=now - timedelta(hours=1))
    store = project.store()
    seed_store(store, world.population, [world.catalog], world.history, now)
    from engine.spec import load_campaign
    project.write("campaigns/c.toml", """
        [campaign]
        name = "c"
        goal = "click"

        [content]
        pool = "articles"
        items = 2

        [[variants]]
        name = "a"
        subject = "A"
        template = "digest"
    """)
    spec = load_campaign(project.path / "campaigns/c.toml", project.path / "templates")
    with store.session() as session:
        from engine.store import queries
        recipients = queries.all_recipients(session)
        decisions = Policy(spec, np.random.default_rng(0)).decide(session, recipients, now)
    assert len(decisions) == int(world.population.consent_email.sum())
    log = decisions[0].log()
    assert set(log) >= {"items", "channel", "channel_probability", "variant", "variant_probability", "propensity",
                        "model_versions", "features_hash"}
    assert log["variant_probability"] == 1.0 and log["channel"] == "email"
    assert len({d.features_hash for d in decisions}) > len(decisions) // 2  # hashes tell recipients apart


def test_the_policy_never_explores_items_its_scorer_eliminated(project: Project,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.learn.ranker import PopularityScorer
    from engine.spec import load_campaign
    from engine.store import queries

    now = datetime.now(UTC)
    world = small_world(size=300, weeks=2, seed=12, start=now - timedelta(hours=1))
    store = project.store()
    seed_store(store, world.population, [world.catalog], world.history, now)
    project.write("campaigns/one.toml", """
        [campaign]
        name = "one"
        goal = "click"

        [content]
        pool = "articles"
        items = 1

        [[variants]]
        name = "a"
        subject = "A"
        template = "digest"

        [optimize]
        exploration = 0.5
    """)
    spec = load_campaign(project.path / "campaigns/one.toml", project.path / "templates")
    ruled_out = set(world.catalog.ids[::2])

    class Eliminating(PopularityScorer):
        def explorable(self, item_ids):  # type: ignore[no-untyped-def]
            return np.array([str(i) not in ruled_out for i in item_ids])

    monkeypatch.setattr(Policy, "scorer", lambda self, session: Eliminating())
    with store.session() as session:
        recipients = queries.all_recipients(session)
        batch = Policy(spec, np.random.default_rng(0)).decide_batch(session, recipients, now, candidates=True)
    ids = np.asarray(batch.features.items.ids)
    decided = np.flatnonzero(batch.decided)
    chosen = ids[batch.picks.items[decided, 0]]
    best = ids[batch.scores[decided].argmax(axis=1)]
    # an eliminated item goes out only where it is the recipient's best; exploration never picks one
    assert all(item not in ruled_out or item == top for item, top in zip(chosen, best, strict=True))
    assert len(set(chosen) - ruled_out) > 3  # exploration still spreads over the others
    assert batch.picks.candidates is not None
    assert np.allclose(batch.picks.candidates[decided, 0].sum(axis=1), 1.0)
