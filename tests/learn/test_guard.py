"""The item guard of ``[optimize] confidence``: it deviates from the best-on-average item only
where a planted gain is real, never on noise, and it survives the model artifact."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine.errors import ModelError
from engine.learn.guard import ItemGuard, fit_guard, pseudo_outcomes


def experiment(n: int, planted_gain: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A randomized three-arm experiment: arm 0 is best on average; where x > 0.8 arm 1 is better
    by ``planted_gain``. Returns (x, logged arm, reward, propensity)."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    arm = rng.integers(0, 3, size=n)
    rate = np.column_stack([np.full(n, 0.20), np.where(x > 0.8, 0.20 + planted_gain, 0.12), np.full(n, 0.10)])
    reward = (rng.random(n) < rate[np.arange(n), arm]).astype(float)
    return x, arm, reward, np.full(n, 1.0 / 3.0)


def stratified_scores(x: np.ndarray, arm: np.ndarray, reward: np.ndarray
                      ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A model of the arms' rates in five bins of x (log-odds), fit on the given rows only."""
    bins = np.minimum((x * 5).astype(int), 4)

    def score_fold(fit: np.ndarray, scored: np.ndarray) -> np.ndarray:
        rates = np.zeros((5, 3))
        for b in range(5):
            for a in range(3):
                rows = fit[(bins[fit] == b) & (arm[fit] == a)]
                rates[b, a] = (reward[rows].sum() + 1.0) / (len(rows) + 5.0)
        chosen = rates[bins[scored]]
        return np.asarray(np.log(chosen) - np.log1p(-chosen))

    return score_fold


def test_the_guard_deviates_where_the_planted_gain_is() -> None:
    x, arm, reward, propensity = experiment(30000, planted_gain=0.15)
    guard = fit_guard(np.arange(len(x)), arm, reward, propensity, ["a", "b", "c"],
                      stratified_scores(x, arm, reward), 0.95, np.random.default_rng(1))
    assert guard is not None and guard.default == "a"
    assert set(guard.thresholds) == {"b"}
    assert guard.estimates["b"]["lower_bound"] > 0 and 0.1 < guard.estimates["b"]["share"] < 0.3
    scores = np.array([[0.0, 0.9, -1.0], [0.0, 0.01, 2.0]])
    kept = guard.apply(scores, ["a", "b", "c"])
    assert kept.argmax(axis=1).tolist() == [1, 0]  # "b" clears its threshold; "c" never does
    assert guard.apply(scores, ["b", "c"]) is scores  # no default among the items: nothing to guard
    # "c" (0.10 against 0.20 everywhere) is eliminated; "b" pays somewhere, so it stays explorable
    assert guard.eliminated == ("c",)
    assert guard.explorable(["a", "b", "c", "new"]).tolist() == [True, True, False, True]


def test_on_noise_the_guard_keeps_the_default_for_everyone() -> None:
    x, arm, reward, propensity = experiment(30000, planted_gain=-0.08)
    guard = fit_guard(np.arange(len(x)), arm, reward, propensity, ["a", "b", "c"],
                      stratified_scores(x, arm, reward), 0.95, np.random.default_rng(1))
    assert guard is not None and guard.default == "a" and not guard.thresholds
    assert set(guard.eliminated) == {"b", "c"}  # both proven worse than "a" for everyone
    assert fit_guard(np.arange(10), arm[:10], reward[:10], propensity[:10], ["a", "b", "c"],
                     stratified_scores(x, arm, reward), 0.95, np.random.default_rng(1)) is None


def test_an_arm_worse_on_average_only_by_noise_is_not_eliminated() -> None:
    rng = np.random.default_rng(3)
    n = 6000
    arm = rng.integers(0, 2, size=n)
    reward = (rng.random(n) < np.where(arm == 0, 0.200, 0.195)).astype(float)  # within noise of each other
    guard = fit_guard(np.arange(n), arm, reward, np.full(n, 0.5), ["a", "b"],
                      lambda fit, scored: np.zeros((len(scored), 2)), 0.95, np.random.default_rng(1))
    assert guard is not None and not guard.eliminated and guard.explorable(["a", "b"]).all()


def test_exploration_spends_nothing_on_eliminated_items() -> None:
    from engine.learn.exploration import fill_slots, slot_distribution

    scores = np.array([[2.0, 1.0, 0.5, 0.1], [0.1, 0.2, 3.0, 0.0]])
    available = np.ones(scores.shape, dtype=bool)
    explorable = np.array([True, True, False, True])
    epsilon = slot_distribution(scores, available, "epsilon", 0.3, 1.0, explorable)
    np.testing.assert_allclose(epsilon.sum(axis=1), 1.0)
    assert epsilon[0, 2] == 0.0 and epsilon[0, 0] == pytest.approx(0.7 + 0.1)
    # an eliminated item that is still a row's best keeps its greedy share, and nothing more
    assert epsilon[1, 2] == pytest.approx(0.7 / 1.0 + 0.3 / 4) and epsilon[1, 1] == pytest.approx(0.075)
    softmax = slot_distribution(scores, available, "softmax", 0.3, 1.0, explorable)
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0)
    assert softmax[0, 2] == 0.0
    # when no available item is explorable, exploration falls back to every available one
    only_eliminated = np.array([[False, False, True, False]] * 2) | np.array([[True, False, False, False]] * 2)
    fallback = slot_distribution(scores, only_eliminated, "epsilon", 0.3, 1.0, np.array([False, True, False, True]))
    assert (fallback[:, [0, 2]] > 0).all() and np.allclose(fallback.sum(axis=1), 1.0)
    picks = fill_slots(np.tile(scores[:1], (4000, 1)), 1, np.random.default_rng(0), kind="epsilon",
                       exploration=0.3, temperature=1.0, explorable=explorable)
    assert not (picks.items[:, 0] == 2).any()
    assert set(np.unique(picks.items[:, 0]).tolist()) == {0, 1, 3}


def test_pseudo_outcomes_are_unbiased_for_each_arm() -> None:
    x, arm, reward, propensity = experiment(60000, planted_gain=0.15, seed=4)
    outcomes = pseudo_outcomes(np.zeros((len(x), 3)), arm, reward, propensity)  # a useless model: IPS
    truth = [0.20, 0.2 * 0.35 + 0.8 * 0.12, 0.10]
    np.testing.assert_allclose(outcomes.mean(axis=0), truth, atol=0.01)


def test_the_guard_round_trips_and_a_damaged_one_is_refused() -> None:
    guard = ItemGuard("a", {"b": 0.25}, 0.95, {"b": {"gain": 0.01, "lower_bound": 0.002, "share": 0.2}}, ("c",))
    assert ItemGuard.from_json(guard.to_json()) == guard
    older = {k: v for k, v in guard.to_json().items() if k != "eliminated"}  # stored before elimination
    assert ItemGuard.from_json(older).eliminated == ()
    pytest.importorskip("lightgbm")
    from engine.features.attributes import AttributeEncoding
    from engine.features.pairs import FeatureSchema
    from engine.learn.ranker import LightGBMRanker, TrainingData, TrainingParams, fit_booster

    schema = FeatureSchema(AttributeEncoding(), AttributeEncoding(), ("t",))
    rng = np.random.default_rng(0)
    matrix = rng.random((300, len(schema.names)), dtype=np.float32)
    booster = fit_booster(TrainingData(matrix, (rng.random(300) < 0.3).astype(float)), schema, "binary",
                          TrainingParams(rounds=5, min_data_in_leaf=20), 1, 1)
    data = LightGBMRanker(booster, schema, "binary", "g1", guard=guard).to_bytes()
    loaded = LightGBMRanker.from_bytes(data)
    assert loaded.guard == guard
    scores = np.array([[0.0, 0.1], [0.0, 0.3]])
    assert loaded.policy_scores(scores, ["a", "b"]).argmax(axis=1).tolist() == [0, 1]
    assert loaded.explorable(["a", "b", "c"]).tolist() == [True, True, False]
    with pytest.raises(ModelError, match="item guard cannot be read"):
        LightGBMRanker.from_bytes(data.replace(b'"default":"a"', b'"defaults":"a"'))
