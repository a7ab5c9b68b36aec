"""Latent taste segments: recovered from the simulator's planted groups, stored and reloaded
exactly, fed by opened impressions only, and refused when damaged."""

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
from tests.learn.simworld import SmallWorld, small_world

CUTOFF = datetime(2026, 11, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


def fitted(world: SmallWorld) -> tuple[TasteSegments, np.ndarray]:
    """The segments fit on the small world's history, and everyone's posterior at its start."""
    events = world.events()
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
                                   codes.astype(np.float64))
    return segments, posterior


def test_segments_recover_the_planted_groups(world: SmallWorld) -> None:
    segments, posterior = fitted(world)
    # Groups 0 and 4 share their favourite topics (the fifth wraps around the eight topics): four tastes.
    group = np.where(world.population.group == 4, 0, world.population.group)
    assert len(segments) == 4
    assigned = posterior.argmax(axis=1)
    majority = {c: np.bincount(group[assigned == c]).argmax() for c in np.unique(assigned)}
    accuracy = float(np.mean([majority[c] == g for c, g in zip(assigned, group, strict=True)]))
    assert accuracy > 0.75, accuracy
    assert sorted(majority.values()) == [0, 1, 2, 3]
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0)
    # Each segment's best topic is its group's favourite (topic 2g of the population's list).
    from engine.sim.population import TOPICS
    for c, g in majority.items():
        assert segments.topics[int(segments.topic_rate[c].argmax())] in (TOPICS[2 * g], TOPICS[2 * g + 1])


def test_segments_round_trip_in_the_schema_and_a_damaged_one_is_refused(world: SmallWorld) -> None:
    segments, _ = fitted(world)
    schema = FeatureSchema(AttributeEncoding(), AttributeEncoding(), ("a", "b"), segments)
    assert schema.names[-len(SEGMENT_NAMES):] == SEGMENT_NAMES
    loaded = FeatureSchema.from_json(schema.to_json())
    assert loaded.segments is not None and loaded.names == schema.names
    np.testing.assert_array_equal(loaded.segments.topic_rate, segments.topic_rate)
    assert FeatureSchema(AttributeEncoding(), AttributeEncoding(), ("a",)).names[-1] == "prior_score"
    damaged = segments.to_json()
    damaged["weights"] = [0.0] * len(segments)
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
