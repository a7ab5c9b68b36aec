"""How the simulated audience answers messages: opens, clicks, conversions and unsubscribes.

The hidden truth, per message (recipient r, items j1..jk in slots, local send hour h, channel c,
variant v, and m messages received in the 7 days before):

- P(open) = open_probability(r, h) x channel_taste[r, c] x variant_open_lift[v] x fatigue[r] ** m
- P(click item in slot s | open) = click_probability(r, item) x SLOT_DECAY[s]
- P(conversion | click) = conversion[r]
- P(unsubscribe) = 0.002 x variant_unsubscribe[v] x (1 + m)

Events get realistic times: an open at the recipient's active hour (or minutes after the send
when it arrives within an hour of it), clicks minutes after the open, conversions after clicks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.features.events import CHANNELS
from engine.features.recipients import zone_offsets
from engine.sim.population import TOPICS, Catalog, Population

SLOT_DECAY = np.array([1.0, 0.8, 0.65, 0.55, 0.5, 0.45, 0.4, 0.35])
UNSUBSCRIBE_BASE = 0.002
_NAMES = ("id", "recipient_id", "ts", "type", "item_id", "topic", "channel", "campaign", "variant", "position",
          "propensity", "message_id")


@dataclass(frozen=True)
class World:
    """Everything hidden that decides responses: the population, the catalog, variant effects."""

    population: Population
    catalog: Catalog
    variant_open_lift: tuple[float, ...] = (1.0,)
    variant_unsubscribe: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class Sends:
    """Messages a policy sent, as columns (one row per message)."""

    recipient: np.ndarray   # index into the population
    items: np.ndarray       # (messages x slots) index into the catalog
    at: np.ndarray          # epoch seconds of the send
    channel: np.ndarray     # index into CHANNELS
    variant: np.ndarray     # index into the world's variants
    propensity: np.ndarray | None = None  # (messages x slots) logged probability of each item

    @classmethod
    def joined(cls, parts: Sequence[Sends]) -> Sends:
        """The messages of ``parts``, one after another (at least one part)."""
        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        logged = all(p.propensity is not None for p in parts)
        return cls(recipient=joined("recipient"), items=joined("items"), at=joined("at"), channel=joined("channel"),
                   variant=joined("variant"), propensity=joined("propensity") if logged else None)

    def local_hours(self, population: Population) -> np.ndarray:
        zones = [population.zone[r] for r in self.recipient]
        moment = datetime.fromtimestamp(float(self.at.min()), UTC) if len(self.at) else datetime.now(UTC)
        return np.asarray(((self.at + zone_offsets(zones, moment)) // 3600) % 24)


@dataclass
class SimEvents:
    """Simulated events as columns named like :data:`engine.store.queries.EVENT_COLUMN_NAMES`
    (``ts`` in epoch seconds), plus an ``id`` column."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in _NAMES})

    def extend(self, **values: Any) -> None:
        count = len(values["recipient_id"])
        for name in _NAMES:
            value = values.get(name)
            self.columns[name].extend(value if isinstance(value, list | np.ndarray) else [value] * count)

    def __len__(self) -> int:
        return len(self.columns["id"])

    def rows(self) -> list[dict[str, Any]]:
        """Rows for the store's event table (``ts`` as aware datetimes; no ``topic``)."""
        names = [n for n in _NAMES if n != "topic"]
        return [{**dict(zip(names, values, strict=True)), "ts": datetime.fromtimestamp(values[2], UTC)}
                for values in zip(*(self.columns[n] for n in names), strict=True)]



def open_probability(world: World, sends: Sends, recent_messages: np.ndarray) -> np.ndarray:
    population = world.population
    base = population.open_probability(sends.recipient, sends.local_hours(population))
    return np.asarray(np.clip(base * open_factor(world, sends, recent_messages), 0.0, 0.95))


def open_factor(world: World, sends: Sends, recent_messages: np.ndarray) -> np.ndarray:
    """What multiplies each message's P(open) besides its hour: the recipient's taste for its
    channel, its variant's lift, and fatigue from the ``recent_messages`` of the week before."""
    population = world.population
    return np.asarray(population.channel_taste[sends.recipient, sends.channel]
                      * np.asarray(world.variant_open_lift)[sends.variant]
                      * population.fatigue[sends.recipient] ** recent_messages)


def click_probabilities(world: World, sends: Sends) -> np.ndarray:
    """(messages x slots) P(click | open) of each slot's item (0 for empty slots)."""
    items = sends.items.clip(0)
    recipients = np.repeat(sends.recipient[:, None], items.shape[1], axis=1)
    p = world.population.click_probability(recipients, world.catalog.topic[items], world.catalog.quality[items])
    return np.asarray(np.where(sends.items >= 0, p * SLOT_DECAY[: items.shape[1]][None, :], 0.0))


def expected_goal_rate(world: World, sends: Sends, recent_messages: np.ndarray) -> np.ndarray:
    """P(at least one click) of each message: the ground truth a policy is judged by."""
    no_click = np.prod(1.0 - click_probabilities(world, sends), axis=1)
    return np.asarray(open_probability(world, sends, recent_messages) * (1.0 - no_click))


def respond(world: World, sends: Sends, rng: np.random.Generator, recent_messages: np.ndarray, *,
            campaign: str, variant_names: tuple[str, ...], tag: str) -> SimEvents:
    """The `sent` events of ``sends`` and the responses they draw. ``tag`` makes event ids unique."""
    population, catalog = world.population, world.catalog
    n, k = sends.items.shape
    ids = np.asarray(population.ids)[sends.recipient]
    events = SimEvents()
    variant = [variant_names[v] for v in sends.variant]
    channel = [CHANNELS[c] for c in sends.channel]
    for slot in range(k):
        has = sends.items[:, slot] >= 0
        item = sends.items[has, slot]
        events.extend(id=[f"{tag}-{r}-{slot}" for r in ids[has]], recipient_id=list(ids[has]),
                      ts=list(sends.at[has]), type="sent", item_id=[catalog.ids[j] for j in item],
                      topic=[TOPICS[catalog.topic[j]] for j in item], channel=list(np.asarray(channel)[has]),
                      campaign=campaign, variant=list(np.asarray(variant)[has]), position=slot,
                      propensity=list(sends.propensity[has, slot]) if sends.propensity is not None else None,
                      message_id=None)
    opened = rng.random(n) < open_probability(world, sends, recent_messages)
    local = sends.local_hours(population)
    wait_hours = (population.active_hour[sends.recipient] - local) % 24
    near = (wait_hours <= 1) | (wait_hours >= 23)
    open_at = np.where(near, sends.at + rng.uniform(60, 3000, n),
                       (sends.at // 3600 + wait_hours) * 3600 + rng.uniform(0, 3000, n))
    rows = np.flatnonzero(opened)
    events.extend(id=[f"{tag}-{r}-o" for r in ids[rows]], recipient_id=list(ids[rows]), ts=list(open_at[rows]),
                  type="open", channel=list(np.asarray(channel)[rows]), campaign=campaign,
                  variant=list(np.asarray(variant)[rows]))
    clicked = opened[:, None] & (rng.random((n, k)) < click_probabilities(world, sends))
    converted = clicked & (rng.random((n, k)) < population.conversion[sends.recipient][:, None])
    for slot in range(k):
        for kind, mask, delay in (("click", clicked[:, slot], (60, 600)), ("conversion", converted[:, slot],
                                                                              (900, 7200))):
            rows = np.flatnonzero(mask)
            item = sends.items[rows, slot]
            at = open_at[rows] + rng.uniform(*delay, len(rows)) + (600 if kind == "conversion" else 0)
            events.extend(id=[f"{tag}-{r}-{slot}-{kind[0]}" for r in ids[rows]], recipient_id=list(ids[rows]),
                          ts=list(at), type=kind, item_id=[catalog.ids[j] for j in item],
                          topic=[TOPICS[catalog.topic[j]] for j in item], channel=list(np.asarray(channel)[rows]),
                          campaign=campaign, variant=list(np.asarray(variant)[rows]), position=slot)
    p_unsubscribe = UNSUBSCRIBE_BASE * np.asarray(world.variant_unsubscribe)[sends.variant] * (1 + recent_messages)
    rows = np.flatnonzero(rng.random(n) < p_unsubscribe)
    events.extend(id=[f"{tag}-{r}-u" for r in ids[rows]], recipient_id=list(ids[rows]),
                  ts=list(sends.at[rows] + rng.uniform(600, 14400, len(rows))), type="unsubscribe",
                  channel=list(np.asarray(channel)[rows]), campaign=campaign, variant=list(np.asarray(variant)[rows]))
    return events


def uniform_sends(world: World, day: datetime, items_per_message: int, rng: np.random.Generator) -> Sends:
    """One message to everyone who consented to email, with uniformly random items, at a
    uniformly random hour of ``day`` (UTC)."""
    population, catalog = world.population, world.catalog
    reachable = np.flatnonzero(population.consent_email)
    m = len(catalog.ids)
    k = min(items_per_message, m)
    picks = np.argsort(rng.random((len(reachable), m)), axis=1)[:, :k]
    propensity = np.tile(1.0 / (m - np.arange(k)), (len(reachable), 1))
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    at = midnight + rng.integers(0, 24, size=len(reachable)) * 3600.0
    return Sends(recipient=reachable, items=picks, at=at,
                 channel=np.zeros(len(reachable), dtype=int), variant=np.zeros(len(reachable), dtype=int),
                 propensity=propensity)


def simulate_history(population: Population, catalog: Catalog, *, weeks: int, items_per_message: int,
                     now: datetime, rng: np.random.Generator, campaign: str = "history") -> SimEvents:
    """Weekly messages of uniformly random items sent to everyone at a random hour, and the answers.

    The logging policy is known (every remaining item equally likely in each slot), so each
    `sent` impression carries its true propensity, as history imported from another sender would.
    """
    world = World(population, catalog)
    events = SimEvents()
    recent = np.zeros(len(population))
    for week in range(weeks, 0, -1):
        day = now - timedelta(days=7 * week)
        sends = uniform_sends(world, day, items_per_message, rng)
        answered = respond(world, sends, rng, recent[sends.recipient], campaign=campaign, variant_names=("",),
                           tag=f"{campaign}-w{week}")
        answered.columns["variant"] = [None] * len(answered)
        for name, values in answered.columns.items():
            events.columns[name].extend(values)
        recent[:] = 0
        recent[sends.recipient] = 1
    return events
