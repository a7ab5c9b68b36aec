"""Latent taste segments: recovered from the simulator's planted groups (better still when people
also read articles outside any message), stored and reloaded exactly, fed by opened impressions
only, and refused when damaged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from engine.features.attributes import AttributeEncoding
from engine.features.events import EventColumns
from engine.features.pairs import SEGMENT_NAMES, FeatureSchema
from engine.features.recipients import recipient_features
from engine.features.segments import TasteSegments, fit_segments
from engine.learn.dataset import Goal, collect_impressions
from engine.sim import SimEvents
from engine.sim.visits import VisitHabits
from tests.learn.simworld import SmallWorld, small_world

CUTOFF = datetime(2026, 11, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


def fitted(world: SmallWorld, reads: SimEvents | None = None) -> tuple[TasteSegments, np.ndarray]:
    """The segments fit on the small world's history (with ``reads`` outside any message), and
    everyone's posterior at its start."""
    columns = world.history.columns
    if reads is not None:
        columns = {name: [*values, *reads.columns[name]] for name, values in columns.items()}
    events = EventColumns.from_columns(columns, list(world.population.ids))
    impressions = collect_impressions(events, world.items(), world.population.zone, world.attributes(),
                                      Goal.of("click", timedelta(hours=48)), world.start - timedelta(weeks=8),
                                      world.start)
    schema = impressions.learn_schema()
    segments = schema.segments
    assert segments is not None
    recipients = recipient_features(events, world.population.zone, world.attributes(), schema.recipient_encoding,
                                    world.start)
    names = list(recipients.names)
    codes = np.column_stack([recipients.values[:, names.index(f"recipient.{a}")] for a in segments.attributes])
    column = [recipients.topics.index(t) for t in segments.topics]
    posterior = segments.posterior(recipients.topic_opened[:, column], recipients.topic_clicks[:, column],
                                   codes.astype(np.float64), recipients.topic_views[:, column])
    return segments, posterior


def recovered(world: SmallWorld, posterior: np.ndarray) -> tuple[float, dict[int, int]]:
    """The share of recipients whose likeliest segment is their planted group's, and which group
    each segment stands for (its members' majority). Groups 0 and 4 share their favourite topics
    (the fifth wraps around the eight topics): four tastes."""
    group = np.where(world.population.group == 4, 0, world.population.group)
    assigned = posterior.argmax(axis=1)
    majority = {int(c): int(np.bincount(group[assigned == c]).argmax()) for c in np.unique(assigned)}
    return float(np.mean([majority[c] == g for c, g in zip(assigned, group, strict=True)])), majority


def reads(world: SmallWorld) -> SimEvents:
    habits = VisitHabits.draw(world.population, np.random.default_rng(11), share=1.0, per_week=1.0)
    return habits.visits(world.population, world.catalog, world.start - timedelta(weeks=6), world.start,
                         np.random.default_rng(12), tag="t")


def test_segments_recover_the_planted_groups(world: SmallWorld) -> None:
    segments, posterior = fitted(world)
    assert len(segments) == 4 and segments.view_share is None
    accuracy, majority = recovered(world, posterior)
    assert accuracy > 0.75, accuracy
    assert sorted(majority.values()) == [0, 1, 2, 3]
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0)
    # Each segment's best topic is its group's favourite (topic 2g of the population's list).
    from engine.sim.population import TOPICS
    for c, g in majority.items():
        assert segments.topics[int(segments.topic_rate[c].argmax())] in (TOPICS[2 * g], TOPICS[2 * g + 1])


def test_articles_read_outside_messages_tell_the_taste_without_a_click(world: SmallWorld) -> None:
    without, before = fitted(world)
    segments, posterior = fitted(world, reads(world))
    assert segments.view_share is not None
    accuracy, majority = recovered(world, posterior)
    assert accuracy > recovered(world, before)[0] + 0.05, accuracy
    # Someone who never clicked but read three tech articles is in the techies' segment.
    tech = segments.topics.index("tech")
    views = np.zeros((2, len(segments.topics)))
    views[0, tech] = 3
    nothing = np.zeros_like(views)
    chosen = segments.posterior(nothing, nothing, np.full((2, len(segments.attributes)), np.nan), views)
    assert majority[int(chosen[0].argmax())] == 1  # tech is group 1's favourite topic
    assert not np.allclose(chosen[0], chosen[1])
    # Segments fit without reads ignore them.
    plain = without.posterior(nothing, nothing, np.full((2, len(without.attributes)), np.nan), views)
    np.testing.assert_allclose(plain[0], plain[1])


def test_segments_round_trip_in_the_schema_and_a_damaged_one_is_refused(world: SmallWorld) -> None:
    segments, _ = fitted(world, reads(world))
    schema = FeatureSchema(AttributeEncoding(), AttributeEncoding(), ("a", "b"), segments)
    assert schema.names[-len(SEGMENT_NAMES):] == SEGMENT_NAMES
    loaded = FeatureSchema.from_json(schema.to_json())
    assert loaded.segments is not None and loaded.names == schema.names
    np.testing.assert_array_equal(loaded.segments.topic_rate, segments.topic_rate)
    assert loaded.segments.view_share is not None and segments.view_share is not None
    np.testing.assert_array_equal(loaded.segments.view_share, segments.view_share)
    older = {k: v for k, v in segments.to_json().items() if k != "view_share"}  # stored before reads counted
    assert TasteSegments.from_json(older).view_share is None
    assert FeatureSchema(AttributeEncoding(), AttributeEncoding(), ("a",)).names[-1] == "prior_score"
    damaged = segments.to_json()
    damaged["weights"] = [0.0] * len(segments)
    with pytest.raises(ValueError, match="inconsistent"):
        TasteSegments.from_json(damaged)
    damaged = segments.to_json()
    damaged["view_share"] = [[0.0] * len(segments.topics)] * len(segments)
    with pytest.raises(ValueError, match="inconsistent"):
        TasteSegments.from_json(damaged)


def test_too_few_clicks_make_no_segments() -> None:
    impressions = np.ones((30, 3))
    clicks = np.zeros((30, 3))
    clicks[:5, 0] = 1
    assert fit_segments(impressions, clicks, ("a", "b", "c"), np.zeros((30, 0)), (), (),
                        np.random.default_rng(0)) is None


def test_only_impressions_of_opened_messages_count_as_opened() -> None:
    rows = [("a", "sent", timedelta(days=3), "i1", "sports", 0), ("a", "sent", timedelta(days=3), "i2", "food", 1),
            ("a", "open", timedelta(days=2), None, None, None),
            ("a", "sent", timedelta(days=1), "i3", "food", 0),          # never opened
            ("b", "sent", timedelta(days=5), "i1", "sports", 0),
            ("b", "click", timedelta(days=4), "i1", "sports", None),    # a click without a logged open
            ("b", "open", timedelta(days=6), None, None, None)]         # before any message: no one's
    columns: dict[str, list[object]] = {k: [] for k in ("recipient_id", "type", "ts", "item_id", "topic", "position",
                                                         "channel", "campaign")}
    for recipient, kind, before, item, topic, position in rows:
        for key, value in zip(columns, (recipient, kind, CUTOFF - before, item, topic, position, "email", "x"),
                              strict=True):
            columns[key].append(value)
    events = EventColumns.from_columns(columns, ["a", "b"])
    features = recipient_features(events, ["UTC", "UTC"], [{}, {}], AttributeEncoding(), CUTOFF)
    sports, food = features.topics.index("sports"), features.topics.index("food")
    np.testing.assert_array_equal(features.topic_impressions[:, [sports, food]], [[1, 2], [1, 0]])
    np.testing.assert_array_equal(features.topic_opened[:, [sports, food]], [[1, 1], [1, 0]])


def test_each_segment_rates_each_item_as_its_members_clicked_it(world: SmallWorld) -> None:
    """The segments carry a click rate per item and segment. Among the items of one topic, where
    the topic's rate cannot tell them apart, it follows the hidden truth (the mean click
    probability of the item in the segment's planted group), and its three best items are worth
    more to that group than three of the segment's best topic, on average. It is stored, reloaded,
    and refused when damaged."""
    from engine.sim.population import TOPICS
    segments, posterior = fitted(world)
    assert segments.item_rate is not None and len(segments.item_ids) == len(world.catalog.ids)
    _, majority = recovered(world, posterior)
    population, catalog = world.population, world.catalog
    column = [segments.item_ids.index(i) for i in catalog.ids]
    group = np.where(population.group == 4, 0, population.group)

    def within_topic(x: np.ndarray) -> np.ndarray:
        return np.asarray(x - np.array([x[catalog.topic == t].mean() for t in catalog.topic]))

    for c, g in majority.items():
        members = np.flatnonzero(group == g)
        truth = np.array([population.click_probability(members, np.full(len(members), catalog.topic[j]),
                                                       np.full(len(members), catalog.quality[j])).mean()
                          for j in range(len(catalog.ids))])
        rate = segments.item_rate[c, column]
        assert np.corrcoef(within_topic(rate), within_topic(truth))[0, 1] > 0.3
        by_topic = segments.topic_rate[c, [segments.topics.index(TOPICS[t]) for t in catalog.topic]]
        best_topic = np.flatnonzero(by_topic == by_topic.max())
        assert truth[np.argsort(-rate)[:3]].sum() > 3 * truth[best_topic].mean()  # any three of the best topic
    loaded = TasteSegments.from_json(segments.to_json())
    assert loaded.item_ids == segments.item_ids and loaded.item_rate is not None
    np.testing.assert_array_equal(loaded.item_rate, segments.item_rate)
    older = {k: v for k, v in segments.to_json().items() if k not in ("item_ids", "item_rate")}
    assert TasteSegments.from_json(older).item_rate is None  # stored before items were rated
    damaged = segments.to_json()
    damaged["item_rate"] = [[1.5] * len(segments.item_ids)] * len(segments)
    with pytest.raises(ValueError, match="inconsistent"):
        TasteSegments.from_json(damaged)
