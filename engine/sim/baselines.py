"""What Kairos is measured against in the simulator: three ways to send without it.

- ``blast``: the same items to everyone (the best click rates in the history), the first
  variant, at a fixed 09:00 local time;
- ``segment rule``: a marketer's hand-made rule: recipients split by a segment (plan, the topic
  they clicked most, the interest they declared, their time-zone region), each segment getting
  its own best items (by the segment's click rates in the history) at its most common open hour;
- ``oracle``: knows the hidden truth: each recipient's best items by their true click
  probability, at their active hour, with the best variant.

And two references for what the log can tell, at best: :func:`bayes_hours` of a recipient's
hour, :func:`bayes_items` of the items they would click. Each reads the log as one who knows the
simulator's models but not the recipient's hidden part would.

All of them see the history Kairos trains on (the oracle needs none); none of them learns during
the simulated weeks, which is the point of the comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Self

import numpy as np

from engine.features.recipients import event_offsets, zone_offsets
from engine.sim.population import (
    ACTIVE_HOURS,
    DECLARED_TRUTHFULLY,
    ENGAGEMENT_SCALE,
    ENGAGEMENT_SHAPE,
    PRO_ENGAGEMENT,
    TASTE_CONCENTRATION,
    TOPICS,
    ZONES,
    Catalog,
    Population,
    click_chance,
    favourite_topic,
    group_tastes,
    open_at_hour,
)
from engine.sim.respond import SLOT_DECAY, Sends, SimEvents, World, open_factor
from engine.sim.visits import HOUR_SHIFT, HOUR_SHIFT_P

DAY = 86400.0


@dataclass(frozen=True)
class HistoryStats:
    """What a marketer can read off the history: impressions and clicks per (recipient, item),
    and each recipient's opens by local hour."""

    impressions: np.ndarray   # (recipients x items)
    clicks: np.ndarray        # (recipients x items)
    opens_by_hour: np.ndarray  # (recipients x 24)


def history_stats(population: Population, catalog: Catalog, events: SimEvents, now: datetime) -> HistoryStats:
    index = {rid: i for i, rid in enumerate(population.ids)}
    items = {iid: j for j, iid in enumerate(catalog.ids)}
    columns = events.columns
    who = np.array([index[r] for r in columns["recipient_id"]])
    kind = np.array(columns["type"])
    item = np.array([items.get(i, -1) if i is not None else -1 for i in columns["item_id"]])
    ts = np.array(columns["ts"], dtype=float)
    impressions = np.zeros((len(population), len(catalog.ids)))
    clicks = np.zeros_like(impressions)
    np.add.at(impressions, (who[kind == "sent"], item[kind == "sent"]), 1.0)
    np.add.at(clicks, (who[kind == "click"], item[kind == "click"]), 1.0)
    offsets = zone_offsets(population.zone, now)
    opened = kind == "open"
    hours = (((ts[opened] + offsets[who[opened]]) // 3600) % 24).astype(int)
    opens = np.zeros((len(population), 24))
    np.add.at(opens, (who[opened], hours), 1.0)
    return HistoryStats(impressions, clicks, opens)


@dataclass(frozen=True)
class _Rows:
    """Aligned arrays, one row per message or item: the fields of a subclass."""

    @classmethod
    def joined(cls, parts: Sequence[Self]) -> Self:
        """The rows of ``parts`` one after another."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass(frozen=True)
class Answered(_Rows):
    """Messages and whether each was opened, with what only the simulator knows of them: the
    input of :func:`bayes_hours`. Arrays are aligned, one row per message."""

    recipient: np.ndarray   # index into the population
    at: np.ndarray          # epoch seconds of the send
    opened_at: np.ndarray   # epoch seconds of its open, NaN when none came
    factor: np.ndarray      # its P(open) besides the hour: channel taste x variant lift x fatigue


def history_answered(population: Population, events: SimEvents) -> Answered:
    """The messages of :func:`engine.sim.respond.simulate_history`: one `sent` event in slot 0
    each (``<tag>-<recipient>-0``), opened when ``<tag>-<recipient>-o`` exists, by e-mail, with no
    variant; a recipient's first message finds them rested, the later ones one message into their
    week (the history's weekly rhythm)."""
    columns = events.columns
    index = {rid: i for i, rid in enumerate(population.ids)}
    ids = np.asarray(columns["id"])
    kind = np.asarray(columns["type"])
    ts = np.asarray(columns["ts"], dtype=float)
    sent = np.flatnonzero((kind == "sent") & (np.asarray(columns["position"], dtype=object) == 0))
    opens = {identifier[:-2]: t for identifier, t in zip(ids[kind == "open"], ts[kind == "open"], strict=True)}
    who = np.array([index[r] for r in np.asarray(columns["recipient_id"])[sent]], dtype=int)
    order = np.argsort(ts[sent], kind="stable")
    sent, who = sent[order], who[order]
    later = np.ones(len(sent), dtype=bool)
    later[np.unique(who, return_index=True)[1]] = False  # after a stable sort: each recipient's earliest
    opened_at = np.array([opens.get(identifier[:-2], np.nan) for identifier in ids[sent]], dtype=float)
    factor = population.channel_taste[who, 0] * population.fatigue[who] ** later.astype(float)
    return Answered(who, ts[sent], opened_at, factor)


def sent_answered(world: World, sends: Sends, recent: np.ndarray, opened_at: np.ndarray) -> Answered:
    """Messages a policy sent (``recent``: each one's recipient's messages of the week before, as
    they were answered with), and when each was opened (NaN: not)."""
    return Answered(sends.recipient, sends.at, np.asarray(opened_at, dtype=float), open_factor(world, sends, recent))


def bayes_hours(population: Population, answered: Answered, window: tuple[int, int],
                visits: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Each recipient's best local send hour for one who knows how the audience answers but not
    the recipient's own hour: the hour inside ``window`` (minutes) with the most expected opens
    under the posterior of their active hour, given every message in ``answered`` and what
    became of it, and their ``visits`` ((recipient index, epoch seconds) of each).

    The observer knows the open model with each message's other factors (:class:`Answered`), that
    active hours are spread evenly over :data:`ACTIVE_HOURS`, reads an open's time as the simulator
    writes it (at the active hour, or within the hour after a send close to it) and visits as
    :mod:`engine.sim.visits` makes them (at the active hour, or an hour either side): more than a
    policy reading the log can know, so no such policy does better on the hour.
    """
    who = answered.recipient
    offsets = event_offsets(population.zone, who, answered.at)  # the zone's offset on the day of the send
    hour = ((answered.at + offsets) // 3600 % 24).astype(int)
    candidates = np.arange(24)
    # P(open | sent at hour h, active hour a), times the message's other factors
    p_open = np.clip(open_at_hour(hour[:, None], candidates[None, :]) * answered.factor[:, None], 0.0, 0.95)
    opened = ~np.isnan(answered.opened_at)
    open_hour = np.where(opened, (np.nan_to_num(answered.opened_at) + offsets) // 3600 % 24, -1).astype(int)
    wait = (candidates[None, :] - hour[:, None]) % 24
    near = (wait <= 1) | (wait >= 23)
    # An open names the active hour, or, close to the send, comes in its hour or the next.
    in_send_hours = (open_hour == hour) | (open_hour == (hour + 1) % 24)
    consistent = np.where(near, in_send_hours[:, None], open_hour[:, None] == candidates[None, :])
    likelihood = np.where(opened[:, None], p_open * consistent, 1.0 - p_open)
    log_posterior = np.full((len(population), 24), -np.inf)
    log_posterior[:, list(ACTIVE_HOURS)] = 0.0
    np.add.at(log_posterior, who, np.log(np.maximum(likelihood, 1e-300)))
    if visits is not None and len(visits[0]):
        visitor, at = visits
        visit_hour = ((at + event_offsets(population.zone, visitor, at)) // 3600 % 24).astype(int)
        shift = (visit_hour[:, None] - candidates[None, :] + 12) % 24 - 12  # (visits x active hour a)
        chance = np.zeros((len(visitor), 24))
        for step, p in zip(HOUR_SHIFT, HOUR_SHIFT_P, strict=True):
            chance[shift == step] = p
        np.add.at(log_posterior, visitor, np.log(np.maximum(chance, 1e-300)))
    posterior = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)
    allowed = np.arange(-(-window[0] // 60), -(-window[1] // 60))  # whole hours starting inside the window
    expected = posterior @ open_at_hour(allowed[:, None], candidates[None, :]).T  # (recipients x allowed hours)
    return np.asarray(allowed[expected.argmax(axis=1)], dtype=float)


def local_time(population: Population, recipients: np.ndarray, day: datetime, hours: np.ndarray) -> np.ndarray:
    """Epoch seconds of ``hours`` (local, per recipient) on the local date of ``day``."""
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    offsets = zone_offsets([population.zone[r] for r in recipients], day)
    return np.asarray(midnight + hours * 3600.0 - offsets)


def top_items(impressions: np.ndarray, clicks: np.ndarray, k: int) -> np.ndarray:
    """The k items with the best smoothed click rate."""
    rate = (clicks + 1.0) / (impressions + 20.0)
    return np.asarray(np.argsort(-rate, kind="stable")[:k])


@dataclass(frozen=True)
class Shown(_Rows):
    """Items recipients were shown in messages they opened, and whether each was clicked: what the
    log says of tastes (an unopened message says nothing of its items). The input of
    :func:`bayes_items`; arrays are aligned, one row per item shown."""

    recipient: np.ndarray   # index into the population
    item: np.ndarray        # index into the catalog
    slot: np.ndarray        # its place in the message
    clicked: np.ndarray     # bool


def history_shown(population: Population, catalog: Catalog, events: SimEvents) -> Shown:
    """The items of the opened messages of :func:`engine.sim.respond.simulate_history`: a `sent`
    event ``<tag>-<recipient>-<slot>`` per item, opened when ``<tag>-<recipient>-o`` exists,
    clicked when ``<tag>-<recipient>-<slot>-c`` does."""
    columns = events.columns
    index = {rid: i for i, rid in enumerate(population.ids)}
    items = {iid: j for j, iid in enumerate(catalog.ids)}
    ids = np.asarray(columns["id"])
    kind = np.asarray(columns["type"])
    opened = {identifier[:-2] for identifier in ids[kind == "open"]}
    clicked = set(ids[kind == "click"])
    rows = [n for n in np.flatnonzero(kind == "sent") if ids[n].rsplit("-", 1)[0] in opened]
    return Shown(np.array([index[columns["recipient_id"][n]] for n in rows], dtype=int),
                 np.array([items[columns["item_id"][n]] for n in rows], dtype=int),
                 np.array([columns["position"][n] for n in rows], dtype=int),
                 np.array([f"{ids[n]}-c" in clicked for n in rows], dtype=bool))


def sent_shown(sends: Sends, opened: np.ndarray, clicked: np.ndarray) -> Shown:
    """The items of a policy's ``sends`` that were ``opened`` (per message), ``clicked`` per
    (message, slot)."""
    message, slot = np.nonzero(opened[:, None] & (sends.items >= 0))
    return Shown(sends.recipient[message], sends.items[message, slot], slot, clicked[message, slot])


PARTICLES_PER_GROUP = 200


def bayes_items(world: World, shown: Shown, k: int, rng: np.random.Generator,
                viewed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(recipients x k) each recipient's items for one who knows how the audience was made (the
    planted groups' tastes and how a person's taste and engagement are drawn around them, every
    item's quality, how interests are declared) but not the recipient's own group, taste or
    engagement: the items with the most expected chance of a click under the posterior of those,
    given what they clicked and left in the messages they opened (``shown``), their declared
    interest, and the topics of the items they read outside any message (``viewed``: recipient
    index, item index). Slots are filled one after another, each with the item that adds the most
    to the chance of at least one click.

    The posterior is over :data:`PARTICLES_PER_GROUP` people drawn from each group as the
    population was (importance sampling, ``rng``), shared by every recipient.
    """
    population, catalog = world.population, world.catalog
    groups = int(population.group.max()) + 1
    group = np.repeat(np.arange(groups), PARTICLES_PER_GROUP)
    concentration = group_tastes(groups) * TASTE_CONCENTRATION
    taste = np.vstack([rng.dirichlet(concentration[g], size=PARTICLES_PER_GROUP) for g in range(groups)])
    engagement = rng.gamma(ENGAGEMENT_SHAPE, ENGAGEMENT_SCALE, size=len(group))
    plan = np.array([p == "pro" for p in population.plan], dtype=int)
    # (plan x item x particle) P(click | opened, slot 0), as Population.click_probability has it
    p = click_chance(taste[:, catalog.topic].T[None, :, :],
                     engagement[None, None, :] * np.array([1.0, PRO_ENGAGEMENT])[:, None, None],
                     catalog.quality[None, :, None])
    declared = np.array([TOPICS.index(t) for t in population.interest])
    favourite = favourite_topic(group)
    log_like = np.log(np.where(declared[:, None] == favourite[None, :], DECLARED_TRUTHFULLY, 0.0)
                      + (1.0 - DECLARED_TRUTHFULLY) / len(TOPICS))   # (recipients x particles)
    chance = np.clip(p[plan[shown.recipient], shown.item] * SLOT_DECAY[shown.slot][:, None], 1e-9, 1.0 - 1e-9)
    _add_rows(log_like, shown.recipient, np.where(shown.clicked[:, None], np.log(chance), np.log1p(-chance)))
    if viewed is not None and len(viewed[0]):
        _add_rows(log_like, viewed[0], np.log(taste[:, catalog.topic[viewed[1]]]).T)
    weight = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    weight /= weight.sum(axis=1, keepdims=True)
    n = len(population)
    rows = np.arange(n)
    none_yet = np.ones_like(weight)              # P(no click in the slots above | particle)
    chosen = np.zeros((n, k), dtype=int)
    available = np.ones((n, len(catalog.ids)), dtype=bool)
    for slot in range(k):
        mass = weight * none_yet
        gain = np.where(plan[:, None] == 1, mass @ p[1].T, mass @ p[0].T)
        pick = np.where(available, gain, -np.inf).argmax(axis=1)
        chosen[:, slot] = pick
        available[rows, pick] = False
        none_yet *= 1.0 - p[plan, pick] * SLOT_DECAY[slot]
    return chosen


def _add_rows(total: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """total[index[i]] += values[i] for every i (repeated indices add up)."""
    if len(index) == 0:
        return
    order = np.argsort(index, kind="stable")
    index, values = index[order], values[order]
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    total[index[starts]] += np.add.reduceat(values, starts, axis=0)


@dataclass(frozen=True)
class Plan:
    """A baseline's choice for one week: items per recipient, local send hour, variant."""

    items: np.ndarray
    hours: np.ndarray
    variant: np.ndarray


def blast(world: World, stats: HistoryStats, recipients: np.ndarray, k: int) -> Plan:
    items = top_items(stats.impressions.sum(axis=0), stats.clicks.sum(axis=0), k)
    n = len(recipients)
    return Plan(np.tile(items, (n, 1)), np.full(n, 9.0), np.zeros(n, dtype=int))


def _segments(world: World, stats: HistoryStats) -> dict[str, np.ndarray]:
    population = world.population
    topic_clicks = np.zeros((len(population), int(world.catalog.topic.max()) + 1))
    np.add.at(topic_clicks.T, world.catalog.topic, stats.clicks.T)
    favourite = np.where(topic_clicks.sum(axis=1) > 0, topic_clicks.argmax(axis=1), -1)
    region = np.array([ZONES.index(z) // 2 for z in population.zone])
    interest = np.array([TOPICS.index(t) for t in population.interest])
    return {"plan": np.array([p == "pro" for p in population.plan], dtype=int), "favourite topic": favourite,
            "declared interest": interest,
            "time-zone region": region}


def segment_rule(world: World, stats: HistoryStats, recipients: np.ndarray, k: int, rule: str) -> Plan:
    segment = _segments(world, stats)[rule][recipients]
    items = np.zeros((len(recipients), k), dtype=int)
    hours = np.zeros(len(recipients))
    for value in np.unique(segment):
        members = recipients[segment == value]
        rows = segment == value
        items[rows] = top_items(stats.impressions[members].sum(axis=0), stats.clicks[members].sum(axis=0), k)
        hours[rows] = float(stats.opens_by_hour[members].sum(axis=0).argmax())
    return Plan(items, hours, np.zeros(len(recipients), dtype=int))


def oracle(world: World, recipients: np.ndarray, k: int, window: tuple[int, int]) -> Plan:
    population, catalog = world.population, world.catalog
    m = len(catalog.ids)
    who = np.repeat(recipients, m)
    what = np.tile(np.arange(m), len(recipients))
    truth = population.click_probability(who, catalog.topic[what], catalog.quality[what]).reshape(len(recipients), m)
    items = np.argsort(-truth, axis=1, kind="stable")[:, :k]
    hours = np.clip(population.active_hour[recipients], window[0] / 60, (window[1] - 1) / 60).astype(float)
    best = int(np.argmax(world.variant_open_lift))
    return Plan(items, np.floor(hours), np.full(len(recipients), best))


SEGMENT_RULES = ("plan", "favourite topic", "declared interest", "time-zone region")
BaselineFactory = Callable[[np.ndarray], Plan]


def click_given_open(world: World, recipients: np.ndarray, items: np.ndarray) -> np.ndarray:
    """P(at least one click | opened) of each message (``items``: slots, -1 empty), from the truth."""
    population, catalog = world.population, world.catalog
    k = items.shape[1]
    who = np.repeat(recipients[:, None], k, axis=1)
    p = population.click_probability(who, catalog.topic[items.clip(0)], catalog.quality[items.clip(0)])
    p = np.where(items >= 0, p * SLOT_DECAY[:k][None, :], 0.0)
    return np.asarray(1.0 - np.prod(1.0 - p, axis=1))
