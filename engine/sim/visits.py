"""Visits outside any message: when a simulated person is on the site or in the app of their own accord.

Real audiences do more than answer messages. They open the app and browse the site, and those
events reach the store through ``POST /events`` or ``kairos import events``, with no campaign.
Here a share of the population (``share``) visits now and then, at the hour they also read their
mail: a Poisson number of visits a week (mean ``per_week``, drawn per person from a gamma with
that mean), on random days, at their active local hour (an hour either side 40% of the time).
Each visit reads one item of the catalog: its topic drawn from the visitor's hidden taste, the
item at random among that topic's. Everyone else never visits, so their hours and tastes stay as
hidden as before.

Visits change no answer: the responses of :mod:`engine.sim.respond` do not depend on them. They
are a signal that a learner may use, not a different audience.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from engine.features.events import DAY
from engine.features.recipients import event_offsets
from engine.sim.population import TOPICS, Catalog, Population
from engine.sim.respond import SimEvents

HOUR_SHIFT = np.array([-1, 0, 1])
HOUR_SHIFT_P = np.array([0.2, 0.6, 0.2])


@dataclass(frozen=True)
class VisitHabits:
    """Visits a week of each recipient (0 for those who never visit), aligned with the population."""

    per_week: np.ndarray

    @classmethod
    def draw(cls, population: Population, rng: np.random.Generator, *, share: float = 0.5,
             per_week: float = 1.0) -> VisitHabits:
        visitor = rng.random(len(population)) < share
        rate = rng.gamma(2.0, per_week / 2.0, size=len(population))
        return cls(np.where(visitor, rate, 0.0))

    def visits(self, population: Population, catalog: Catalog, since: datetime, until: datetime,
               rng: np.random.Generator, *, tag: str) -> SimEvents:
        """`visit` events in [since, until), each on an item of ``catalog``, with no campaign."""
        start, end = since.timestamp(), until.timestamp()
        counts = rng.poisson(self.per_week * (end - start) / (7 * DAY))
        who = np.repeat(np.arange(len(population)), counts)
        # A random moment of the period, then the recipient's hour (or one beside it) on that local
        # day, in the zone's time of that hour.
        moment = start + rng.uniform(0, end - start, len(who))
        offsets = event_offsets(population.zone, who, moment)
        local_day = np.floor((moment + offsets) / DAY) * DAY
        hour = (population.active_hour[who] + rng.choice(HOUR_SHIFT, size=len(who), p=HOUR_SHIFT_P)) % 24
        ts = local_day + hour * 3600.0 + rng.uniform(0, 3600.0, len(who)) - offsets
        ts += offsets - event_offsets(population.zone, who, ts)  # the clocks may change in between
        keep = (ts >= start) & (ts < end)
        who, ts = who[keep], ts[keep]
        item = _read_items(population.taste[who], catalog, rng)
        ids = np.asarray(population.ids)[who]
        events = SimEvents()
        events.extend(id=[f"{tag}-{rid}-v{n}" for n, rid in enumerate(ids)], recipient_id=list(ids), ts=list(ts),
                      type="visit", item_id=[catalog.ids[j] for j in item],
                      topic=[TOPICS[catalog.topic[j]] for j in item])
        return events


def _read_items(taste: np.ndarray, catalog: Catalog, rng: np.random.Generator) -> np.ndarray:
    """One catalog item per row of ``taste`` (visits x topics): a topic by the taste, then one of
    its items at random (topics the catalog lacks are drawn again among the ones it has)."""
    has = np.bincount(catalog.topic, minlength=taste.shape[1]) > 0
    weights = taste * has[None, :]
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    topic = (cumulative < rng.random(len(taste))[:, None]).sum(axis=1).clip(0, taste.shape[1] - 1)
    by_topic = np.argsort(catalog.topic, kind="stable")
    first = np.searchsorted(catalog.topic[by_topic], topic, side="left")
    count = np.searchsorted(catalog.topic[by_topic], topic, side="right") - first
    return np.asarray(by_topic[first + np.floor(rng.random(len(taste)) * count).astype(np.int64)])
