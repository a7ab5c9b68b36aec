"""Visits outside any message come at each visitor's active hour, only from visitors, and read
articles of the topics they like."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from engine.features.recipients import event_offsets
from engine.sim import TOPICS, make_catalog, make_population
from engine.sim.visits import VisitHabits

SINCE = datetime(2026, 10, 19, 3, 30, tzinfo=UTC)  # four weeks across Europe's and America's clock changes
UNTIL = SINCE + timedelta(weeks=4)
CATALOG = make_catalog("articles", 40, SINCE, np.random.default_rng(3))


def test_visits_come_at_the_active_local_hour_from_visitors_only() -> None:
    population = make_population(3000, np.random.default_rng(4))
    habits = VisitHabits.draw(population, np.random.default_rng(5), share=0.5, per_week=1.0)
    visits = habits.visits(population, CATALOG, SINCE, UNTIL, np.random.default_rng(6), tag="t")
    columns = visits.columns
    who = np.array([population.ids.index(r) for r in columns["recipient_id"]])
    ts = np.array(columns["ts"])
    assert 0.45 < np.mean(habits.per_week > 0) < 0.55
    assert set(columns["type"]) == {"visit"} and set(columns["campaign"]) == {None}
    assert len(set(columns["id"])) == len(visits)
    assert np.all((ts >= SINCE.timestamp()) & (ts < UNTIL.timestamp()))
    assert np.all(habits.per_week[who] > 0)
    # About a visit a week from each visitor: 4 over four weeks, less the ones cut at the edges.
    assert 3.6 < len(visits) / np.sum(habits.per_week > 0) < 4.2
    local_hour = ((ts + event_offsets(population.zone, who, ts)) // 3600 % 24).astype(int)
    distance = np.abs((local_hour - population.active_hour[who] + 12) % 24 - 12)
    assert distance.max() == 1
    assert 0.55 < np.mean(distance == 0) < 0.65
    # Each visit reads one article, of a topic drawn from the visitor's taste.
    item = np.array([CATALOG.ids.index(i) for i in columns["item_id"]])
    topic = np.array([TOPICS.index(t) for t in columns["topic"]])
    np.testing.assert_array_equal(topic, CATALOG.topic[item])
    favourite = population.taste[who].argmax(axis=1)
    expected = population.taste[who, favourite].mean()
    assert abs(np.mean(topic == favourite) - expected) < 0.03


def test_the_same_generator_gives_the_same_visits() -> None:
    population = make_population(200, np.random.default_rng(4))
    habits = VisitHabits.draw(population, np.random.default_rng(5))
    first = habits.visits(population, CATALOG, SINCE, UNTIL, np.random.default_rng(9), tag="t").columns
    again = habits.visits(population, CATALOG, SINCE, UNTIL, np.random.default_rng(9), tag="t").columns
    assert first == again
    assert habits.visits(population, CATALOG, SINCE, SINCE, np.random.default_rng(9), tag="t").columns["id"] == []
