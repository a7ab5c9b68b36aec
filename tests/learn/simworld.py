"""A small simulated world for learning tests: population, catalog, uniform history, as columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.features.events import EventColumns
from engine.sim import Catalog, Population, SimEvents, World, make_catalog, make_population, simulate_history
from engine.store import ContentItem

START = datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class SmallWorld:
    population: Population
    catalog: Catalog
    history: SimEvents
    start: datetime

    @property
    def world(self) -> World:
        return World(self.population, self.catalog, (1.0, 1.25), (1.0, 1.0))

    def events(self) -> EventColumns:
        return EventColumns.from_columns(self.history.columns, list(self.population.ids))

    def items(self) -> list[ContentItem]:
        return [ContentItem(**row) for row in self.catalog.content_rows()]

    def attributes(self) -> list[dict[str, Any]]:
        rows = self.population.recipient_rows()
        return [{"plan": r["plan"], "first_name": r["first_name"], "interest": r["interest"]} for r in rows]

    def true_click(self) -> np.ndarray:
        """(recipients x items) the hidden P(click | open)."""
        n, m = len(self.population), len(self.catalog.ids)
        who = np.repeat(np.arange(n), m)
        what = np.tile(np.arange(m), n)
        return self.population.click_probability(who, self.catalog.topic[what],
                                                 self.catalog.quality[what]).reshape(n, m)


def small_world(size: int = 1500, weeks: int = 6, items: int = 40, seed: int = 3,
                start: datetime = START) -> SmallWorld:
    rng = np.random.default_rng(seed)
    population = make_population(size, rng)
    catalog = make_catalog("articles", items, start, rng, published_before=timedelta(weeks=weeks + 1))
    history = simulate_history(population, catalog, weeks=weeks, items_per_message=3, now=start, rng=rng)
    return SmallWorld(population, catalog, history, start)
