"""Delayed feedback: a message too recent for its goal to have arrived counts as the share of a
trial that goals usually take to arrive, so the variant that sent most recently is not judged
by answers that have not come yet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from engine.decide import Policy
from engine.learn.outcomes import ALL, MIN_DELAYS, OutcomeTally, arm_outcomes, first_goal_delays
from engine.spec.load import load_campaign
from engine.store import Event, Recipient, Store
from tests.learn.test_bandit import write_campaign

NOW = datetime(2026, 10, 10, 12, tzinfo=UTC)


def delay_of(n: int) -> timedelta:
    """Goals arrive spread over the first 20 hours after their message."""
    return timedelta(minutes=30 + 60 * ((n // 5) % 20))


def seed(store: Store, recent_b: int) -> None:
    """100 messages of each variant five days ago and ``recent_b`` of b two hours ago; every fifth
    recipient clicks, after :func:`delay_of` — a click only if that moment has already come."""
    events, people = [], []
    batches = [("old", "a", NOW - timedelta(days=5), 100), ("old", "b", NOW - timedelta(days=5), 100),
               ("new", "b", NOW - timedelta(hours=2), recent_b)]
    for tag, variant, sent_at, count in batches:
        for n in range(count):
            rid = f"{tag}-{variant}-{n}"
            people.append(Recipient(id=rid, email=f"{rid}@x.test"))
            events.append(Event(id=f"s-{rid}", recipient_id=rid, type="sent", ts=sent_at, campaign="promo",
                                variant=variant, position=0, item_id="i1", message_id=len(events)))
            clicked_at = sent_at + delay_of(n)
            if n % 5 == 0 and clicked_at < NOW:
                events.append(Event(id=f"c-{rid}", recipient_id=rid, type="click", ts=clicked_at, campaign="promo"))
    with store.session() as session:
        session.add_all(people)
        session.add_all(events)


def test_recent_messages_count_by_the_share_of_goals_that_had_time_to_arrive(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    seed(store, recent_b=300)
    spec = load_campaign(write_campaign(tmp_path, ""), tmp_path / "templates")
    with store.session() as session:
        outcomes = arm_outcomes(session, "promo", ["a", "b"], "click", spec.goal_window, NOW)
    np.testing.assert_array_equal(outcomes.sends, [100, 400])  # the guardrail still sees every send
    # 4 of the 40 settled delays are under two hours: each pending message is a tenth of a trial
    recent_clicks = sum(1 for n in range(300) if n % 5 == 0 and delay_of(n) < timedelta(hours=2))
    np.testing.assert_array_equal(outcomes.successes, [20, 20 + recent_clicks])
    pending = 300 - recent_clicks
    np.testing.assert_allclose(outcomes.goal_trials, [100, 100 + recent_clicks + pending * 4 / 40])
    rates = outcomes.successes / outcomes.goal_trials
    raw = outcomes.successes / outcomes.sends
    assert abs(rates[1] - rates[0]) < 0.03 < abs(raw[1] - raw[0])  # both arms click 20% in truth
    # The bandit chooses by those rates: without the correction it would favour a almost surely.
    policy = Policy(spec, np.random.default_rng(0))
    distribution, _ = policy.variant_distribution(outcomes, False)
    assert 0.2 < distribution[1] < 0.8


def goal_trial_weights(sent: np.ndarray, reached: np.ndarray, credited: np.ndarray, goal_ts: np.ndarray,
                       window_seconds: float, now: float) -> np.ndarray:
    """Each message's weight as a trial of the goal: each message is a variant of its own."""
    count, none = len(sent), np.zeros(len(sent), dtype=bool)
    tally = OutcomeTally(count, [], window_seconds, now)
    tally.add(sent, np.arange(count), np.full(count, -1), reached, first_goal_delays(sent, credited, goal_ts),
              none, none)
    return tally.outcomes()[ALL].goal_trials


def test_without_enough_goals_every_message_counts_whole(tmp_path: Path) -> None:
    weights = goal_trial_weights(np.array([0.0, 90.0]), np.array([False, False]), np.array([], dtype=np.int64),
                                 np.array([]), 3600.0, 100.0)
    np.testing.assert_array_equal(weights, [1.0, 1.0])
    few = MIN_DELAYS - 1
    sent = np.zeros(few + 1)
    reached = np.r_[np.ones(few, dtype=bool), False]
    credited = np.arange(few)
    weights = goal_trial_weights(sent, reached, credited, np.full(few, 10.0), 3600.0, 100.0)
    np.testing.assert_array_equal(weights, np.ones(few + 1))


def test_answered_and_settled_messages_are_whole_trials() -> None:
    count = 2 * MIN_DELAYS
    sent = np.r_[np.zeros(count), [950.0, 990.0, 999.0]]
    reached = np.r_[np.ones(count, dtype=bool), [False, True, False]]
    credited = np.flatnonzero(reached)
    goal_ts = np.r_[np.linspace(1.0, 100.0, count), [995.0]]
    weights = goal_trial_weights(sent, reached, credited, goal_ts, 200.0, 1000.0)
    assert weights[:count].tolist() == [1.0] * count      # answered long ago
    assert weights[count + 1] == 1.0                       # answered, though recent
    assert weights[count] == pytest.approx(np.mean(np.linspace(1.0, 100.0, count) <= 50.0))
    assert weights[count + 2] == pytest.approx(np.mean(np.linspace(1.0, 100.0, count) <= 1.0))
    old = goal_trial_weights(np.r_[sent, [0.0]], np.r_[reached, False], credited, goal_ts, 200.0, 1000.0)
    assert old[-1] == 1.0                                  # its window has passed: a failure, whole
