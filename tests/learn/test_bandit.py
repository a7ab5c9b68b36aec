"""Bandits over variants: traffic converges on the best arm; staged tests explore then exploit;
the guardrail pauses a harmful arm; outcomes are credited inside the goal window and carried
across runs of a campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from engine.decide import Policy
from engine.learn.bandit import (
    ArmOutcomes,
    EpsilonGreedy,
    Guardrail,
    StagedTest,
    ThompsonSampler,
    UpperConfidenceBound,
    VariantPolicy,
    mix_exploration,
)
from engine.learn.outcomes import arm_outcomes
from engine.spec.load import load_campaign
from engine.store import Event, Recipient, Store

TRUE_RATES = np.array([0.04, 0.07, 0.11])  # arm 2 is best


def run_bandit(policy: VariantPolicy, rounds: int, batch: int, exploration: float, seed: int) -> np.ndarray:
    """Play ``rounds`` batches; return the share of each round's traffic that went to each arm."""
    rng = np.random.default_rng(seed)
    sends = np.zeros(3)
    successes = np.zeros(3)
    shares = []
    for _ in range(rounds):
        p = mix_exploration(policy.probabilities(sends, successes, rng), exploration)
        assert p.sum() == pytest.approx(1.0)
        arms = rng.choice(3, size=batch, p=p)
        wins = rng.random(batch) < TRUE_RATES[arms]
        sends += np.bincount(arms, minlength=3)
        successes += np.bincount(arms[wins], minlength=3)
        shares.append(np.bincount(arms, minlength=3) / batch)
    return np.array(shares)


@pytest.mark.parametrize("policy", [ThompsonSampler(), UpperConfidenceBound(), EpsilonGreedy()],
                         ids=["thompson", "ucb", "epsilon"])
def test_traffic_converges_on_the_best_arm(policy: VariantPolicy) -> None:
    for seed in (1, 2, 3):
        shares = run_bandit(policy, rounds=60, batch=400, exploration=0.05, seed=seed)
        assert shares[-10:, 2].mean() > 0.85, (policy.name, seed, shares[-10:].mean(axis=0))
        assert shares[:3, 2].mean() < 0.9  # it had to learn: early traffic was not already there


def test_staged_test_splits_evenly_then_sends_the_best_posterior_mean() -> None:
    rng = np.random.default_rng(0)
    sends, successes = np.array([500.0, 500.0, 500.0]), np.array([20.0, 35.0, 55.0])
    np.testing.assert_allclose(StagedTest(exploiting=False).probabilities(sends, successes, rng), [1 / 3] * 3)
    np.testing.assert_allclose(StagedTest(exploiting=True).probabilities(sends, successes, rng), [0, 0, 1])


def test_guardrail_pauses_an_arm_that_makes_people_unsubscribe() -> None:
    guard = Guardrail(unsubscribe_rate=0.01, complaint_rate=0.001, min_sends=200)
    outcomes = ArmOutcomes(sends=np.array([1000.0, 1000.0, 150.0]), successes=np.array([50.0, 90.0, 10.0]),
                           unsubscribes=np.array([3.0, 25.0, 9.0]), complaints=np.zeros(3))
    # Arm 1 crosses 1%; arm 2 has a worse rate but too few sends to judge yet.
    np.testing.assert_array_equal(guard.paused(outcomes), [False, True, False])
    everyone = ArmOutcomes(np.full(2, 1000.0), np.zeros(2), np.array([30.0, 20.0]), np.zeros(2))
    np.testing.assert_array_equal(guard.paused(everyone), [True, False])  # the least bad keeps going


def write_campaign(path: Path, extra: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    templates = path / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "t.txt").write_text("hi")
    campaign = path / "c.toml"
    campaign.write_text(f"""
[campaign]
name = "promo"
goal = "click"
goal_window = "24h"

[content]
pool = "p"

[[variants]]
name = "a"
subject = "A"
template = "t"

[[variants]]
name = "b"
subject = "B"
template = "t"

[optimize]
exploration = 0.0
{extra}
""")
    return campaign


def test_outcomes_are_credited_inside_the_goal_window_and_carried_across_runs(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    spec = load_campaign(write_campaign(tmp_path, 'guardrail = { unsubscribe_rate = 0.2, min_sends = 4 }'),
                         tmp_path / "templates")
    t0 = datetime(2026, 10, 1, 9, tzinfo=UTC)
    events = []
    for run in range(2):  # two runs of the campaign, a week apart
        day = t0 + timedelta(days=7 * run)
        for n in range(10):
            variant = "a" if n < 5 else "b"
            events.append(Event(id=f"s{run}-{n}", recipient_id=f"r{n}", type="sent", ts=day, campaign="promo",
                                variant=variant, position=0, item_id="i1", message_id=run * 100 + n))
    # Variant b: clicks inside 24h in both runs; variant a: one click inside, one 30h late.
    for run in range(2):
        day = t0 + timedelta(days=7 * run)
        for n in (5, 6, 7):
            events.append(Event(id=f"c{run}-{n}", recipient_id=f"r{n}", type="click", ts=day + timedelta(hours=2),
                                campaign="promo", variant="b"))
    events.append(Event(id="ca", recipient_id="r0", type="click", ts=t0 + timedelta(hours=3), campaign="promo"))
    events.append(Event(id="late", recipient_id="r1", type="click", ts=t0 + timedelta(hours=30), campaign="promo"))
    events.append(Event(id="other", recipient_id="r2", type="click", ts=t0 + timedelta(hours=1), campaign="else"))
    events += [Event(id=f"u{n}", recipient_id=f"r{n}", type="unsubscribe", ts=t0 + timedelta(days=8), campaign=None)
               for n in (0, 1, 2)]
    with store.session() as session:
        session.add_all(events)
        session.add_all(Recipient(id=f"r{n}", email=f"r{n}@x.test") for n in range(10))
    now = t0 + timedelta(days=10)
    with store.session() as session:
        outcomes = arm_outcomes(session, "promo", ["a", "b"], "click", spec.goal_window, now)
    np.testing.assert_array_equal(outcomes.sends, [10, 10])
    np.testing.assert_array_equal(outcomes.successes, [1, 6])
    np.testing.assert_array_equal(outcomes.unsubscribes, [3, 0])
    # A new run's policy starts from these outcomes; the guardrail has paused arm a (30% unsubscribed).
    policy = Policy(spec, np.random.default_rng(0))
    with store.session() as session:
        outcomes, exploiting = policy.arm_outcomes(session, now)
    distribution, context = policy.variant_distribution(outcomes, exploiting)
    np.testing.assert_allclose(distribution, [0.0, 1.0])
    assert context["paused_variants"] == ["a"]


def test_a_staged_send_explores_on_a_share_then_exploits_after_the_wait(tmp_path: Path) -> None:
    from engine.learn.sendtime import plan_campaign_send_times

    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    spec = load_campaign(write_campaign(tmp_path, 'staged = { explore = 0.2, wait = "4h" }'), tmp_path / "templates")
    t0 = datetime(2026, 10, 1, 9, tzinfo=UTC)
    ids = [f"r{n}" for n in range(2000)]
    with store.session() as session:
        times = plan_campaign_send_times(session, spec, ids, ["UTC"] * len(ids), t0, np.random.default_rng(0))
    first = np.array([t.at == t0 for t in times])
    assert 0.17 < first.mean() < 0.23
    assert all(t.at == t0 + timedelta(hours=4) for t, now in zip(times, first, strict=True) if not now)
    # The explore share went out at t0 with arm b doing better; before the wait: even split.
    with store.session() as session:
        session.add_all(Event(id=f"s{n}", recipient_id=f"r{n}", type="sent", ts=t0, campaign="promo",
                              variant="ab"[n % 2], position=0, message_id=n) for n in range(400))
        session.add_all(Event(id=f"c{n}", recipient_id=f"r{n}", type="click", ts=t0 + timedelta(hours=1),
                              campaign="promo") for n in range(400) if n % 2 == 1 and n % 3 == 0)
    for hours, expected, stage in ((2, [0.5, 0.5], "explore"), (5, [0.0, 1.0], "exploit")):
        policy = Policy(spec, np.random.default_rng(0))
        with store.session() as session:
            outcomes, exploiting = policy.arm_outcomes(session, t0 + timedelta(hours=hours))
        distribution, context = policy.variant_distribution(outcomes, exploiting)
        np.testing.assert_allclose(distribution, expected)
        assert context["stage"] == stage
