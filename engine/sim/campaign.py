"""Simulated weeks of a recurring campaign: Kairos deciding and learning, or a baseline sending.

Kairos runs its real loop against a store: each week it retrains the ranker from the event log
(``kairos train``), builds the audience and plans send times at the run's start; then, as the
pump does, it decides items, channel and variant when messages fall due — hour by hour of send
time, each hour's messages decided at their first send instant from the events before it — and
the simulated audience answers. The answers go into the store at once, with their own (later)
timestamps: every reader takes only events before its ``now``, so the evening's decisions see the
morning's answers (the bandit's posteriors move within the run), and next week's features, ranker
and bandit learn from all of them. Unsubscribes are suppressed, as the tracking server would.

A week's goal rate is the share of messages followed by at least one click; ``expected`` is
the same from the hidden probabilities (less noisy), ``realized`` from the simulated answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from engine.audience.build import build_audience
from engine.decide import Policy
from engine.errors import KairosError
from engine.features.events import CHANNELS
from engine.learn.ranker import TrainingParams
from engine.learn.sendtime import plan_campaign_send_times
from engine.learn.training import TrainingReport, train_campaign
from engine.sim.baselines import Plan, local_time
from engine.sim.respond import Sends, SimEvents, World, expected_goal_rate, respond
from engine.sim.seed import write_events
from engine.spec.model import CampaignSpec
from engine.store import Store, queries
from engine.store.queries import RecipientRow

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class WeekOutcome:
    messages: int
    expected_goals: float
    realized_goals: int
    unsubscribes: int
    training: TrainingReport | None = None
    # what Kairos sent that week, and each message's recipient's messages of the week before (the
    # fatigue its answer was drawn with): to judge the decisions against the hidden truth
    sends: Sends | None = None
    recent: np.ndarray | None = None

    @property
    def expected_rate(self) -> float:
        return self.expected_goals / max(self.messages, 1)

    @property
    def realized_rate(self) -> float:
        return self.realized_goals / max(self.messages, 1)


def summary(weeks: list[WeekOutcome]) -> dict[str, float]:
    messages = sum(w.messages for w in weeks)
    return {"messages": messages,
            "goal_rate_expected": round(sum(w.expected_goals for w in weeks) / max(messages, 1), 5),
            "goal_rate_realized": round(sum(w.realized_goals for w in weeks) / max(messages, 1), 5),
            "unsubscribes": sum(w.unsubscribes for w in weeks)}


def _answer(world: World, sends: Sends, recent: np.ndarray, rng: np.random.Generator, campaign: str,
            variants: tuple[str, ...], tag: str) -> tuple[SimEvents, WeekOutcome]:
    expected = float(expected_goal_rate(world, sends, recent[sends.recipient]).sum())
    events = respond(world, sends, rng, recent[sends.recipient], campaign=campaign, variant_names=variants, tag=tag)
    kinds = np.array(events.columns["type"])
    clicked = {r for r, k in zip(events.columns["recipient_id"], kinds, strict=True) if k == "click"}
    outcome = WeekOutcome(len(sends.recipient), expected, len(clicked), int((kinds == "unsubscribe").sum()))
    return events, outcome


def run_baseline(world: World, choose: Callable[[np.ndarray], Plan], days: list[datetime], rng: np.random.Generator,
                 *, campaign: str, variants: tuple[str, ...]) -> list[WeekOutcome]:
    """Send ``choose``'s plan every week to everyone reachable by email (minus unsubscribes)."""
    population = world.population
    active = population.consent_email.copy()
    recent = np.zeros(len(population))
    weeks = []
    for number, day in enumerate(days):
        recipients = np.flatnonzero(active)
        plan = choose(recipients)
        sends = Sends(recipient=recipients, items=plan.items, at=local_time(population, recipients, day, plan.hours),
                      channel=np.zeros(len(recipients), dtype=int), variant=plan.variant)
        events, outcome = _answer(world, sends, recent, rng, campaign, variants, f"{campaign}-{number}")
        weeks.append(outcome)
        unsubscribed = [population.ids.index(r) for r, k in zip(events.columns["recipient_id"],
                                                                  events.columns["type"], strict=True)
                        if k == "unsubscribe"]
        active[unsubscribed] = False
        recent[:] = 0
        recent[recipients] = 1
    return weeks


def run_kairos(store: Store, spec: CampaignSpec, world: World, days: list[datetime], rng: np.random.Generator, *,
               params: TrainingParams | None = None, train: bool = True,
               visits: Callable[[datetime, datetime], SimEvents] | None = None) -> list[WeekOutcome]:
    """The campaign's weeks with Kairos deciding and learning; the store must hold the population,
    the catalog (as ``spec``'s pool) and any history. ``visits(since, until)``, when given, are the
    audience's events outside any message, written week by week."""
    population, catalog = world.population, world.catalog
    person = {rid: i for i, rid in enumerate(population.ids)}
    item_index = {iid: j for j, iid in enumerate(catalog.ids)}
    variants = tuple(v.name for v in spec.variants)
    recent = np.zeros(len(population))
    weeks = []
    for number, day in enumerate(days):
        if visits is not None:
            write_events(store, visits(day, day + WEEK))
        report = None
        if train:
            try:
                report = train_campaign(store, spec, day, rng, params=params)
            except KairosError:
                report = None  # too little data yet: keep deciding with what is promoted
        with store.session() as session:
            members = [m.recipient for m in build_audience(session, spec, day) if m.status == "send"]
            times = plan_campaign_send_times(session, spec, [r.id for r in members], [r.timezone for r in members],
                                             day, rng)
            session.rollback()
        policy = Policy(spec, rng)
        due = np.array([t.at.timestamp() for t in times])
        hour = np.floor(due / 3600.0)
        answered: list[WeekOutcome] = []
        sent: list[Sends] = []
        for batch_hour in np.unique(hour):
            batch = np.flatnonzero(hour == batch_hour)
            now = datetime.fromtimestamp(float(due[batch].min()), UTC)
            sends = _decide(store, policy, spec, [members[r] for r in batch], due[batch], now, person, item_index)
            if sends is None:
                continue
            events, outcome = _answer(world, sends, recent, rng, spec.name, variants, f"{spec.name}-{number}")
            write_events(store, events)
            with store.session() as session:
                for recipient_id, kind in zip(events.columns["recipient_id"], events.columns["type"], strict=True):
                    if kind == "unsubscribe":
                        queries.add_suppression(session, reason="unsubscribe", recipient_id=str(recipient_id))
            answered.append(outcome)
            sent.append(sends)
        week_sends = Sends.joined(sent) if sent else None
        weeks.append(WeekOutcome(sum(w.messages for w in answered), sum(w.expected_goals for w in answered),
                                 sum(w.realized_goals for w in answered), sum(w.unsubscribes for w in answered),
                                 report, week_sends,
                                 recent[week_sends.recipient].copy() if week_sends is not None else None))
        recent[:] = 0
        if week_sends is not None:
            recent[week_sends.recipient] = 1
    return weeks


def _decide(store: Store, policy: Policy, spec: CampaignSpec, members: list[RecipientRow], due: np.ndarray,
            now: datetime, person: dict[str, int], item_index: dict[str, int]) -> Sends | None:
    """Decide for ``members`` at ``now`` (their messages go out at ``due``), as the pump would."""
    with store.session() as session:
        batch = policy.decide_batch(session, members, now)
        session.rollback()
    decided = np.flatnonzero(batch.decided)
    if len(decided) == 0:
        return None
    table_items = np.array([item_index[str(i)] for i in batch.features.items.ids])
    slots = batch.picks.items[decided]
    return Sends(
        recipient=np.array([person[batch.features.recipient_ids[r]] for r in decided], dtype=int),
        items=np.where(slots >= 0, table_items[slots.clip(0)], -1),
        at=due[decided],
        channel=np.array([CHANNELS.index(spec.channels[c]) for c in batch.channel[decided]], dtype=int),
        variant=batch.variant[decided], propensity=batch.picks.probability[decided])
