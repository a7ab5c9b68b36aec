"""Features from a hand-written event log: exact counts, no look-ahead, local hours across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from engine.features.attributes import AttributeEncoding, learn_encoding
from engine.features.content import counts_from_events, item_table
from engine.features.events import EventColumns
from engine.features.pairs import CROSS_NAMES, FeatureSchema, pair_inputs, pair_matrix
from engine.features.recipients import BASE_NAMES, recipient_features
from engine.store import ContentItem

CUTOFF = datetime(2026, 11, 2, 12, tzinfo=UTC)


def log(*rows: tuple[str, str, timedelta, str | None, str | None]) -> dict[str, list[object]]:
    """rows of (recipient, type, time before the cutoff, item, topic)."""
    columns: dict[str, list[object]] = {k: [] for k in ("recipient_id", "type", "ts", "item_id", "topic",
                                                         "channel", "position", "campaign")}
    for recipient, kind, before, item, topic in rows:
        for key, value in zip(("recipient_id", "type", "ts", "item_id", "topic", "channel", "position", "campaign"),
                              (recipient, kind, CUTOFF - before, item, topic, "email",
                               0 if kind == "sent" else None, "x"), strict=True):
            columns[key].append(value)
    return columns


def test_counts_recency_and_no_look_ahead() -> None:
    columns = log(
        ("a", "sent", timedelta(hours=2), "i1", "sports"),
        ("a", "open", timedelta(hours=1), None, None),
        ("a", "click", timedelta(hours=1), "i1", "sports"),
        ("a", "sent", timedelta(days=10), "i2", "food"),
        ("a", "click", timedelta(days=100), "i2", "food"),          # beyond the 90-day horizon
        ("b", "sent", timedelta(days=3), "i2", "food"),
        ("b", "click", -timedelta(hours=1), "i2", "food"),          # after the cutoff: never seen
    )
    events = EventColumns.from_columns(columns, ["a", "b", "c"])
    features = recipient_features(events, ["UTC"] * 3, [{}, {}, {}], AttributeEncoding(), CUTOFF)
    value = dict(zip(BASE_NAMES, features.values.T, strict=True))
    np.testing.assert_array_equal(value["sent_1d"], [1, 0, 0])
    np.testing.assert_array_equal(value["sent_7d"], [1, 1, 0])
    np.testing.assert_array_equal(value["sent_30d"], [2, 1, 0])
    np.testing.assert_array_equal(value["click_90d"], [1, 0, 0])
    np.testing.assert_allclose(value["days_since_click"], [1 / 24, np.nan, np.nan], rtol=1e-5)
    assert np.isnan(value["tenure_days"][2]) and value["tenure_days"][0] > 9.9
    sports, food = events.topics.index("sports"), events.topics.index("food")
    np.testing.assert_array_equal(features.topic_clicks[:, sports], [1, 0, 0])
    np.testing.assert_array_equal(features.topic_clicks[:, food], [0, 0, 0])
    assert value["click_rate"][0] > value["click_rate"][1] > 0


def test_hour_of_week_uses_each_events_own_utc_offset() -> None:
    # Madrid is UTC+2 until 25 October 2026 and UTC+1 after: 19:00 UTC on 20 October is 21:00 there.
    moment = datetime(2026, 10, 20, 19, 10, tzinfo=UTC)
    columns = {"recipient_id": ["a"], "type": ["open"], "ts": [moment], "channel": ["email"]}
    events = EventColumns.from_columns(columns, ["a"])
    features = recipient_features(events, ["Europe/Madrid"], [{}], AttributeEncoding(), CUTOFF)
    assert np.flatnonzero(features.hour_of_week[0]).tolist() == [1 * 24 + 21]  # Tuesday 21:00


def test_what_recipients_do_outside_any_message_counts_as_activity_and_reading() -> None:
    """A page view with no campaign is activity at its hour and a read of its item's topic; the
    same kind of event credited to a campaign, a bounce and an unsubscribe are neither."""
    rows = [("a", "page_view", timedelta(hours=5), "i1", "sports", None),
            ("a", "page_view", timedelta(hours=4), "i2", "food", "spring-sale"),
            ("a", "visit", timedelta(hours=3), None, None, None),
            ("a", "bounce", timedelta(hours=2), None, None, None),
            ("b", "unsubscribe", timedelta(hours=2), None, None, None)]
    columns: dict[str, list[object]] = {k: [] for k in ("recipient_id", "type", "ts", "item_id", "topic", "campaign")}
    for recipient, kind, before, item, topic, campaign in rows:
        for key, value in zip(columns, (recipient, kind, CUTOFF - before, item, topic, campaign), strict=True):
            columns[key].append(value)
    events = EventColumns.from_columns(columns, ["a", "b"])
    features = recipient_features(events, ["UTC", "UTC"], [{}, {}], AttributeEncoding(), CUTOFF)
    sports, food = events.topics.index("sports"), events.topics.index("food")
    np.testing.assert_array_equal(features.topic_views[:, [sports, food]], [[1, 0], [0, 0]])
    # Monday 07:00 and 09:00 (the cutoff is Monday 12:00 UTC).
    assert np.flatnonzero(features.hour_of_week[0]).tolist() == [7, 9]
    assert features.hour_of_week[1].sum() == 0


def test_item_features_and_cross_features() -> None:
    columns = log(
        *[("a", "sent", timedelta(days=2), "i1", "sports") for _ in range(1)],
        ("a", "click", timedelta(days=2) - timedelta(minutes=5), "i1", "sports"),
        ("b", "sent", timedelta(days=20), "i1", "sports"),
        ("b", "sent", timedelta(days=20), "i2", "food"),
    )
    events = EventColumns.from_columns(columns, ["a", "b"])
    items = [ContentItem(id="i1", pool="p", title="t", url="https://x.test", topic="sports",
                         published_at=CUTOFF - timedelta(days=30), attributes={"paywall": True}),
             ContentItem(id="i2", pool="p", title="t", url="https://x.test", topic="food",
                         published_at=CUTOFF - timedelta(hours=3), attributes={"paywall": False})]
    counts = counts_from_events(events, ["i1", "i2"], CUTOFF.timestamp(), "click")
    np.testing.assert_array_equal(counts.impressions, [2, 1])
    np.testing.assert_array_equal(counts.recent_impressions, [1, 0])
    table = item_table(items, counts, CUTOFF)
    assert table.popularity[0] > table.popularity[1]
    np.testing.assert_allclose(table.age_hours, [720, 3])
    attributes = [{"interest": "food"}, {"interest": "sports"}]
    schema = FeatureSchema(learn_encoding(attributes), learn_encoding([i.attributes for i in items]),
                           ("food", "sports"))
    recipients = recipient_features(events, ["UTC", "UTC"], attributes, schema.recipient_encoding, CUTOFF)
    inputs = pair_inputs(schema, recipients, table, [i.attributes for i in items])
    matrix = pair_matrix(inputs, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert matrix.shape == (4, len(schema.names))
    cross = dict(zip(CROSS_NAMES, matrix[:, -len(CROSS_NAMES):].T, strict=True))
    np.testing.assert_array_equal(cross["sent_before"], [1, 0, 1, 1])
    np.testing.assert_array_equal(cross["clicked_before"], [1, 0, 0, 0])
    np.testing.assert_array_equal(cross["topic_declared"], [0, 1, 1, 0])  # a declared food, b sports
    names = list(schema.names)
    np.testing.assert_array_equal(matrix[:, names.index("item.paywall")], [1, 0, 1, 0])
    assert matrix[0, names.index("topic_affinity")] > matrix[2, names.index("topic_affinity")]
