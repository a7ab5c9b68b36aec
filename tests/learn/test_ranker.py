"""The ranker learns the simulator's planted tastes, from item-per-message history and from
single-item impressions alike, and its artifact survives the store."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from engine.errors import ModelError
from engine.features.content import counts_from_events, item_table
from engine.features.events import EventColumns
from engine.features.pairs import pair_inputs, pair_matrix
from engine.features.recipients import recipient_features
from engine.learn.dataset import Goal, collect_impressions
from engine.learn.metrics import ndcg_at_k, roc_auc
from engine.learn.ranker import LightGBMRanker, PopularityScorer, TrainingParams
from engine.learn.training import TrainingReport, fit_ranker, objective_for, split_rows, train_and_validate
from engine.store import ContentItem
from tests.learn.simworld import SmallWorld, small_world

PARAMS = TrainingParams(rounds=80)


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


@pytest.fixture(scope="module")
def trained(world: SmallWorld) -> LightGBMRanker:
    events = world.events()
    impressions = collect_impressions(events, world.items(), world.population.zone, world.attributes(),
                                      Goal.of("click", timedelta(hours=48)), world.start - timedelta(weeks=8),
                                      world.start)
    assert objective_for(impressions) == "lambdarank"
    return fit_ranker(impressions, np.arange(len(impressions)), "lambdarank", PARAMS, seed=1, k=3, version="t1")


def top3_truth(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean true click probability of each recipient's three best-scored items."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    return float(np.take_along_axis(truth, top, axis=1).mean())


def test_ranker_learns_planted_tastes_well_above_popularity(world: SmallWorld, trained: LightGBMRanker) -> None:
    events = world.events()
    items = world.items()
    assert trained.schema is not None
    recipients = recipient_features(events, world.population.zone, world.attributes(),
                                    trained.schema.recipient_encoding, world.start)
    table = item_table(items, counts_from_events(events, [i.id for i in items], world.start.timestamp(), "click"),
                       world.start)
    inputs = pair_inputs(trained.schema, recipients, table, [i.attributes for i in items])
    truth = world.true_click()
    model, popularity = trained.score_all(inputs), PopularityScorer().score_all(inputs)
    oracle = float(-np.sort(-truth, axis=1)[:, :3].mean())
    chance = float(truth.mean())
    learned, baseline = top3_truth(model, truth), top3_truth(popularity, truth)
    # Ranking quality against the hidden truth: the ranker closes most of the gap popularity leaves.
    assert learned > 1.3 * baseline, (learned, baseline)
    assert (learned - chance) > 0.6 * (oracle - chance), (learned, chance, oracle)
    groups = np.repeat(np.arange(len(truth)), truth.shape[1])
    gains = np.digitize(truth, np.quantile(truth, [0.8, 0.95])).reshape(-1)
    assert ndcg_at_k(model.reshape(-1), gains, groups, 3) > ndcg_at_k(popularity.reshape(-1), gains, groups, 3) + 0.1


def test_the_segment_score_rates_items_the_segments_know_and_the_topic_rates_new_ones(
        world: SmallWorld, trained: LightGBMRanker) -> None:
    """Items of the log are scored by their own rate in each segment (two stories of a topic
    differ), an item published after training by its topic's; the slot cascade gets the same."""
    schema = trained.schema
    assert schema is not None and schema.segments is not None and schema.segments.item_rate is not None
    events = world.events()
    items = world.items()
    fresh = ContentItem(**{**items[0].model_dump(), "id": "articles-new"})
    recipients = recipient_features(events, world.population.zone, world.attributes(), schema.recipient_encoding,
                                    world.start)
    table = item_table([*items, fresh], counts_from_events(events, [i.id for i in [*items, fresh]],
                                                           world.start.timestamp(), "click"), world.start)
    inputs = pair_inputs(schema, recipients, table, [i.attributes for i in [*items, fresh]])
    rates = inputs.segment_item_rates()
    assert rates is not None and inputs.segment_posterior is not None
    ids = list(table.ids)
    first = ids.index(items[0].id)
    same_topic = [ids.index(i.id) for i in items if i.topic == items[0].topic]
    new = ids.index("articles-new")
    assert not np.allclose(rates[:, same_topic], rates[:, same_topic[:1]])  # a topic's items differ
    by_topic = inputs.segment_topic_rate
    assert by_topic is not None
    np.testing.assert_allclose(rates[:, new], by_topic[:, inputs.item_topic[new]])
    column = list(schema.names).index("segment_score")
    matrix = pair_matrix(inputs, np.zeros(2, dtype=np.int64), np.array([first, new]))
    expected = inputs.segment_posterior[0] @ rates[:, [first, new]]
    np.testing.assert_allclose(matrix[0, column], np.log(expected[0]), rtol=1e-5)
    assert matrix[1, column] != np.float32(np.log(expected[1]))  # unrated: popularity and topic lift


def test_the_artifact_round_trips_and_a_damaged_one_is_refused(trained: LightGBMRanker) -> None:
    data = trained.to_bytes()
    loaded = LightGBMRanker.from_bytes(data)
    matrix = np.random.default_rng(0).random((50, len(trained.schema.names) if trained.schema else 0),
                                             dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(matrix), trained.predict(matrix))
    assert loaded.version == "t1" and loaded.objective == "lambdarank"
    # Boosted from the segment score: the margin is part of every prediction, and must name a column.
    assert loaded.base == trained.base == "segment_score"
    with pytest.raises(ModelError, match="base margin column 'nope'"):
        LightGBMRanker.from_bytes(data.replace(b'"base":"segment_score"', b'"base":"nope"'))
    with pytest.raises(ModelError, match="not a Kairos ranker artifact"):
        LightGBMRanker.from_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot be loaded"):
        LightGBMRanker.from_bytes(data[: len(data) // 2])


def test_single_item_impressions_train_a_pointwise_model_that_learns_attribute_item_interactions() -> None:
    """Hillstrom-shaped history: one item per message, uniformly logged, a goal without item id.

    Planted truth: customers of segment 'a' visit after item X, those of 'b' after item Y; Z
    (no e-mail) does little for either. Only the interaction of a recipient attribute with an
    item attribute separates them."""
    rng = np.random.default_rng(8)
    n = 6000
    segment = np.where(rng.random(n) < 0.5, "a", "b")
    shown = rng.integers(0, 3, size=n)
    truth = np.array([[0.30, 0.06, 0.03], [0.06, 0.30, 0.03]])  # [segment, item]
    visited = rng.random(n) < truth[(segment == "b").astype(int), shown]
    ids = [f"c{i}" for i in range(n)]
    start = 1_790_000_000.0
    columns = {
        "recipient_id": ids + [ids[i] for i in np.flatnonzero(visited)],
        "type": ["sent"] * n + ["visit"] * int(visited.sum()),
        "ts": [start] * n + [start + 3600.0] * int(visited.sum()),
        "item_id": [f"item-{'XYZ'[s]}" for s in shown] + [None] * int(visited.sum()),
        "position": [0] * n + [None] * int(visited.sum()),
        "propensity": [1 / 3] * n + [None] * int(visited.sum()),
        "campaign": ["old"] * (n + int(visited.sum())),
    }
    events = EventColumns.from_columns(columns, ids)
    from datetime import UTC, datetime
    moment = datetime.fromtimestamp(start, UTC)
    items = [ContentItem(id=f"item-{x}", pool="p", title=x, url="https://x.test", topic="offer",
                         published_at=moment - timedelta(days=1), attributes={"line": x}) for x in "XYZ"]
    impressions = collect_impressions(events, items, ["UTC"] * n, [{"segment": s} for s in segment],
                                      Goal.of("visit", timedelta(days=14)), moment - timedelta(days=1),
                                      moment + timedelta(days=1))
    assert objective_for(impressions) == "binary"
    assert impressions.positive.sum() == visited.sum()
    ranker = fit_ranker(impressions, np.arange(len(impressions)), "binary", TrainingParams(rounds=60), seed=1, k=1,
                        version="h")
    assert ranker.schema is not None
    matrix, _ = impressions.matrix(ranker.schema, np.arange(len(impressions)))
    # Score every customer against every item: the learned best item is the planted one.
    every = np.repeat(np.arange(len(impressions)), 3)
    what = np.tile(np.arange(3), len(impressions))
    recipients = recipient_features(events, ["UTC"] * n, [{"segment": s} for s in segment],
                                    ranker.schema.recipient_encoding, moment)
    table = item_table(items, counts_from_events(events, [i.id for i in items], start, "visit"), moment)
    inputs = pair_inputs(ranker.schema, recipients, table, [i.attributes for i in items])
    scores = ranker.score_pairs(inputs, impressions.recipient[every], what).reshape(-1, 3)
    best = scores.argmax(axis=1)
    planted = np.where(segment[impressions.recipient] == "a", 0, 1)
    assert (best == planted).mean() > 0.95
    probability = 1 / (1 + np.exp(-ranker.predict(matrix)))
    assert roc_auc(probability, impressions.positive) > 0.7
    assert abs(probability.mean() - visited.mean()) < 0.02  # pointwise scores are calibrated probabilities


def test_a_model_is_judged_only_on_sends_newer_than_its_training_data(world: SmallWorld,
                                                                      trained: LightGBMRanker) -> None:
    """The current model stored when it was trained; held-out rows it may have learned from go
    to the candidate's training part instead of judging it."""
    events = world.events()
    impressions = collect_impressions(events, world.items(), world.population.zone, world.attributes(),
                                      Goal.of("click", timedelta(hours=48)), world.start - timedelta(weeks=8),
                                      world.start)
    _train, valid, _how = split_rows(impressions, np.random.default_rng(3))
    held_out = np.sort(impressions.ts[valid])
    cutoff = float(held_out[len(held_out) // 2])  # the current model saw half of the held-out rows
    newer = int((impressions.ts[valid] > cutoff).sum())
    assert 0 < newer < len(valid)

    def judged(trained_until: float | None) -> tuple[LightGBMRanker, TrainingReport]:
        current = LightGBMRanker.from_bytes(trained.to_bytes())
        if trained_until is not None:
            current.metrics["trained_until"] = trained_until
        return train_and_validate(impressions, current, campaign="c", k=3, params=PARAMS,
                                  rng=np.random.default_rng(3), version="t2")

    candidate, report = judged(cutoff)
    assert report.validation_rows == newer
    assert candidate.metrics["trained_until"] == pytest.approx(cutoff)  # it learned the rows moved over
    assert any("moved to training" in note for note in report.notes)
    _, unmarked = judged(None)  # a model stored without the mark: the held-out rows as split
    assert unmarked.validation_rows == len(valid)
    _, everything = judged(float(impressions.ts.max()))  # it saw every row: nothing is left to judge it
    assert everything.validation_rows == 0 and not everything.promoted
