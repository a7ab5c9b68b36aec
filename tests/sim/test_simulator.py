"""The simulator answers sends consistently with its hidden truth, and the baselines order as the
truth says they should; Kairos, learning in the loop, beats sending the same to everyone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.decide import Policy
from engine.sim import seed_store
from engine.sim.baselines import (
    Answered,
    Shown,
    bayes_hours,
    bayes_items,
    blast,
    click_given_open,
    history_answered,
    history_shown,
    history_stats,
    oracle,
    segment_rule,
    sent_answered,
    sent_shown,
)
from engine.sim.campaign import run_baseline, run_kairos, summary
from engine.sim.population import TOPICS
from engine.sim.respond import Sends, SimEvents, expected_goal_rate, respond, uniform_sends
from engine.spec import load_campaign
from engine.spec.model import CampaignSpec
from engine.store import Store
from tests.learn.simworld import SmallWorld, small_world

WEEKLY = """
[campaign]
name = "weekly"
goal = "click"

[schedule]
window = ["07:00", "22:00"]
send_time = "optimize"

[content]
pool = "articles"
items = 3

[[variants]]
name = "a"
subject = "A"
template = "t"

[[variants]]
name = "b"
subject = "B"
template = "t"

[optimize]
exploration = 0.05
"""


def test_answers_follow_the_funnel_and_come_after_the_send() -> None:
    world = small_world(size=800, weeks=1, seed=2)
    sends = uniform_sends(world.world, world.start, 3, np.random.default_rng(0))
    events = respond(world.world, sends, np.random.default_rng(1), np.zeros(len(sends.recipient)),
                     campaign="c", variant_names=("a", "b"), tag="t")
    kinds = np.array(events.columns["type"])
    who = np.array(events.columns["recipient_id"])
    ts = np.array(events.columns["ts"], dtype=float)
    assert set(who[kinds == "click"]) <= set(who[kinds == "open"])
    converted = list(zip(who[kinds == "conversion"], np.array(events.columns["item_id"])[kinds == "conversion"],
                         strict=True))
    clicked = set(zip(who[kinds == "click"], np.array(events.columns["item_id"])[kinds == "click"], strict=True))
    assert all(pair in clicked for pair in converted)
    assert ts[kinds != "sent"].min() >= sends.at.min()
    assert (kinds == "sent").sum() == 3 * len(sends.recipient)


def test_baselines_order_as_the_truth_says() -> None:
    world = small_world(size=1500, weeks=4, seed=6)
    stats = history_stats(world.population, world.catalog, world.history, world.start)
    days = [world.start]

    def rate(choose: object) -> float:
        weeks = run_baseline(world.world, choose, days, np.random.default_rng(0), campaign="b",  # type: ignore[arg-type]
                             variants=("a", "b"))
        return summary(weeks)["goal_rate_expected"]

    same_for_all = rate(lambda r: blast(world.world, stats, r, 3))
    by_interest = rate(lambda r: segment_rule(world.world, stats, r, 3, "declared interest"))
    knows_all = rate(lambda r: oracle(world.world, r, 3, (7 * 60, 22 * 60)))
    assert same_for_all < by_interest < knows_all
    assert knows_all > 4 * same_for_all


def test_bayes_hours_read_the_history_as_well_as_it_can_be_read() -> None:
    world = small_world(size=1500, weeks=8, seed=6)
    population = world.population
    hours = bayes_hours(population, history_answered(population, world.history), (7 * 60, 22 * 60))
    kinds = np.array(world.history.columns["type"])
    opened = np.isin(np.array(population.ids), np.array(world.history.columns["recipient_id"])[kinds == "open"])
    own = hours == population.active_hour
    assert own[opened].mean() > 0.85  # an open's time names the hour
    assert own[~opened].mean() < 0.4  # silences say little
    assert ((hours >= 7) & (hours < 22)).all()


def test_bayes_hours_move_away_from_hours_that_stayed_silent() -> None:
    world = small_world(size=2, weeks=1, seed=6)
    population = replace(world.population, zone=("Europe/London", "Europe/London"),
                         channel_taste=np.ones((2, 2)), fatigue=np.ones(2))
    events = SimEvents()
    monday = world.start.replace(hour=0, minute=0, second=0, microsecond=0)
    for week in range(6):  # recipient 0: evening messages, never opened; recipient 1: one open at 12:40
        at = (monday - timedelta(weeks=week + 1)).timestamp() + (19 + week % 2) * 3600
        events.extend(id=[f"w{week}-r00000-0", f"w{week}-r00001-0"], recipient_id=list(population.ids), ts=[at, at],
                      type="sent", position=0)
    events.extend(id=["w0-r00001-o"], recipient_id=[population.ids[1]],
                  ts=[(monday - timedelta(weeks=1)).timestamp() + 12 * 3600 + 2400], type="open")
    read = history_answered(population, events)
    silent, answered = bayes_hours(population, read, (7 * 60, 22 * 60))
    assert silent not in (18, 19, 20, 21)
    assert answered == 12
    visits = (np.zeros(3, dtype=int),  # the silent one visits the site at 13:10, 13:30 and 14:20: around 13
              np.array([(monday - timedelta(days=day)).timestamp() + seconds
                        for day, seconds in ((2, 13 * 3600 + 600), (3, 13 * 3600 + 1800), (5, 14 * 3600 + 1200))]))
    assert silent != 13
    assert bayes_hours(population, read, (7 * 60, 22 * 60), visits)[0] == 13
    # A campaign's message at 10:00 that the silent one opened at 13:20 names their hour.
    sends = Sends(recipient=np.array([0]), items=np.zeros((1, 3), dtype=int), at=np.array([monday.timestamp() + 36000]),
                  channel=np.zeros(1, dtype=int), variant=np.zeros(1, dtype=int))
    campaign = sent_answered(replace(world.world, population=population), sends, np.ones(1),
                             np.array([monday.timestamp() + 13 * 3600 + 1200]))
    assert bayes_hours(population, Answered.joined([read, campaign]), (7 * 60, 22 * 60))[0] == 13


def test_bayes_items_read_tastes_from_clicks_interests_and_reads() -> None:
    world = small_world(size=1500, weeks=8, seed=6)
    population, catalog = world.population, world.catalog
    shown = history_shown(population, catalog, world.history)
    kinds = np.array(world.history.columns["type"])
    assert shown.clicked.sum() == (kinds == "click").sum()  # every click is on an item of an opened message
    everyone = np.arange(len(population))
    truth = world.world
    items = bayes_items(truth, shown, 3, np.random.default_rng(1))
    best = click_given_open(truth, everyone, oracle(truth, everyone, 3, (7 * 60, 22 * 60)).items)
    read = click_given_open(truth, everyone, items)
    anything = click_given_open(truth, everyone, np.tile(np.arange(3), (len(population), 1)))
    assert read.mean() > 0.8 * best.mean() and read.mean() > 1.5 * anything.mean()
    # Someone whose log shows nothing but an interest in tech (what the techies declare) gets tech
    # first; clicks on travel (the travellers' favourite), or reads of it, turn them to travel.
    techie = replace(truth, population=replace(population, interest=("tech",) * len(population)))
    nothing = Shown(*(np.zeros(0, dtype=int),) * 3, np.zeros(0, dtype=bool))
    rng = np.random.default_rng(2)

    def first_topic(chosen: np.ndarray) -> str:
        return TOPICS[int(catalog.topic[chosen[0, 0]])]

    assert first_topic(bayes_items(techie, nothing, 3, np.random.default_rng(1))) == "tech"
    travel = np.flatnonzero(catalog.topic == TOPICS.index("travel"))[:3]
    sends = Sends(recipient=np.zeros(2, dtype=int), items=np.tile(travel, (2, 1)), at=np.zeros(2),
                  channel=np.zeros(2, dtype=int), variant=np.zeros(2, dtype=int))
    clicks = np.array([[True, False, True], [True, True, False]])
    assert first_topic(bayes_items(techie, sent_shown(sends, np.ones(2, dtype=bool), clicks), 3, rng)) == "travel"
    visited = (np.zeros(4, dtype=int), np.repeat(travel[:1], 4))  # four reads of a travel story
    assert first_topic(bayes_items(techie, nothing, 3, rng, visited)) == "travel"
    unopened = sent_shown(sends, np.zeros(2, dtype=bool), clicks)
    assert first_topic(bayes_items(techie, unopened, 3, rng)) == "tech"  # an unopened message says nothing


def weekly_campaign(tmp_path: Path, world: SmallWorld) -> tuple[Store, CampaignSpec]:
    """A store seeded with ``world`` and its history, and the WEEKLY campaign over it."""
    store = Store.open(f"sqlite:///{tmp_path / 'sim.db'}")
    seed_store(store, world.population, [world.catalog], world.history, world.start)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "t.txt").write_text("x")
    (tmp_path / "c.toml").write_text(WEEKLY)
    spec = load_campaign(tmp_path / "c.toml", templates)
    return store, spec


def test_kairos_learns_in_the_loop_and_beats_the_blast(tmp_path: Path) -> None:
    world = small_world(size=1000, weeks=6, seed=12)
    store, spec = weekly_campaign(tmp_path, world)
    days = [world.start + timedelta(days=7 * w) for w in range(2)]
    from engine.learn.ranker import TrainingParams
    kairos = run_kairos(store, spec, world.world, days, np.random.default_rng(1), params=TrainingParams(rounds=60))
    stats = history_stats(world.population, world.catalog, world.history, world.start)
    blasted = run_baseline(world.world, lambda r: blast(world.world, stats, r, 3), days, np.random.default_rng(1),
                           campaign="b", variants=("a", "b"))
    assert kairos[0].training is not None and kairos[0].training.promoted
    assert summary(kairos)["goal_rate_expected"] > 2.0 * summary(blasted)["goal_rate_expected"]


def test_kairos_decides_hour_by_hour_from_the_events_before_each_hour(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As the pump does: each hour's messages are decided at their first send instant, and the
    bandit then counts exactly the messages sent before it (the earlier hours'), never later ones."""
    world = small_world(size=600, weeks=4, seed=4)
    store, spec = weekly_campaign(tmp_path, world)
    calls: list[tuple[float, int, float]] = []
    decide_batch = Policy.decide_batch

    def recorded(self: Policy, session: Any, recipients: Any, now: Any, **kwargs: Any) -> Any:
        outcomes, _ = self.arm_outcomes(session, now)
        calls.append((now.timestamp(), len(recipients), float(outcomes.sends.sum())))
        return decide_batch(self, session, recipients, now, **kwargs)

    monkeypatch.setattr(Policy, "decide_batch", recorded)
    weeks = run_kairos(store, spec, world.world, [world.start], np.random.default_rng(2), train=False)
    times = [t for t, _, _ in calls]
    assert len(calls) > 5 and times == sorted(times) and len({int(t // 3600) for t in times}) == len(calls)
    assert all(t >= world.start.timestamp() for t in times)
    sent_before = np.cumsum([0] + [n for _, n, _ in calls[:-1]])
    # Every recipient of the audience is reachable by email here, so each batch's recipients were sent to.
    assert [sends for _, _, sends in calls] == sent_before.tolist()
    assert weeks[0].messages == sum(n for _, n, _ in calls)
    # The week keeps what it sent, hour after hour, so the decisions can be judged against the truth.
    sends, recent = weeks[0].sends, weeks[0].recent
    assert sends is not None and recent is not None
    assert len(sends.recipient) == len(recent) == weeks[0].messages and np.all(recent == 0)
    assert np.all(np.diff(sends.at // 3600) >= 0) and sends.items.shape == (weeks[0].messages, 3)
    assert sends.propensity is not None and np.allclose(
        expected_goal_rate(world.world, sends, recent).sum(), weeks[0].expected_goals)
