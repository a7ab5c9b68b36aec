"""Audiences on SQLite and PostgreSQL: behavioural functions, segments, tiers, predicted, holdout."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlmodel import select

from engine.audience.build import build_audience, holdout_draw, select_recipients
from engine.errors import SpecError
from engine.schedule.planning import plan_run
from engine.spec import CampaignSpec, load_campaign
from engine.store import ContentItem, Event, Message, MessageState, Recipient, Store
from engine.store.db import upsert
from engine.store.queries import add_suppression
from engine.store.segments import SegmentProfile, save_build
from tests.conftest import ROOT

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def campaign(tmp_path: Path, audience: str, content: str = "") -> CampaignSpec:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""
        [campaign]
        name = "digest"
        goal = "click"

        [audience]
        {audience}

        [content]
        pool = "news"
        {content}

        [[variants]]
        name = "a"
        subject = "Hi"
        template = "digest"
    """).replace("{audience}", audience).replace("{content}", content))
    return load_campaign(path, ROOT / "templates")


def seed(store: Store, recipients: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    items = [{"id": f"{topic}-{n}", "pool": "news", "title": f"{topic} {n}", "url": f"https://x.test/{topic}/{n}",
              "topic": topic, "published_at": NOW - timedelta(hours=n + 1), "attributes": {}, "updated_at": NOW}
             for topic in ("sports", "tech") for n in range(3)]
    with store.session() as session:
        upsert(session, Recipient, [{"email": f"{r['id']}@example.test", "timezone": "UTC", "locale": "en",
                                     "consent_email": True, "consent_push": False, "attributes": {},
                                     "created_at": NOW, "updated_at": NOW, **r} for r in recipients], ["id"])
        upsert(session, ContentItem, items, ["id"])
        upsert(session, Event, [{"id": f"e{n}", **e} for n, e in enumerate(events)], ["id"])


def event(recipient: str, kind: str, days_ago: float, item: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"recipient_id": recipient, "type": kind, "ts": NOW - timedelta(days=days_ago), "item_id": item, **extra}


@pytest.fixture
def people(store: Store) -> Store:
    recipients = [
        {"id": "ann", "attributes": {"plan": "pro", "signup_at": "2026-11-20", "age": 34}},
        {"id": "bob", "attributes": {"plan": "free", "signup_at": "2025-01-15T10:00:00+00:00", "age": "n/a"}},
        {"id": "cy", "attributes": {"plan": "pro", "vip": True}},
        {"id": "dee", "consent_email": False, "attributes": {}},
    ]
    events = [
        event("ann", "click", 2, "sports-0"), event("ann", "click", 40, "sports-1"),
        event("ann", "sent", 2, "sports-0", message_id=1), event("ann", "sent", 2, "tech-0", message_id=1),
        event("ann", "sent", 40, "sports-1", message_id=2),
        event("bob", "open", 1), event("bob", "open", 3), event("bob", "open", 20),
        event("bob", "purchase", 10), event("bob", "sent", 1, "tech-1", message_id=3),
        event("cy", "click", 100, "tech-2"), event("cy", "sent", 100, "tech-2", message_id=4),
        event("cy", "sent", 101, "tech-1", message_id=5),
    ]
    seed(store, recipients, events)
    return store


@pytest.mark.parametrize(("where", "expected"), [
    ("clicks(30) >= 1", ["ann"]),
    ("clicks(60) >= 2", ["ann"]),
    ("opens(7) >= 2", ["bob"]),
    ("opens(30) == 3 and events('purchase', 30) == 1", ["bob"]),
    ("sends(30) == 1", ["ann", "bob"]),
    ("sends(200) == 2", ["ann", "cy"]),
    ("days_since('click') < 7", ["ann"]),
    ("not days_since('click') < 7", ["bob", "cy", "dee"]),
    ("days_since('click') > 90", ["cy"]),
    ("topic_affinity('sports') > 0.6", ["ann"]),
    ("topic_affinity('tech') < 0.5", ["ann", "bob"]),
    ("attributes.plan == 'pro' and clicks(30) == 0", ["cy"]),
    ("attributes.plan in ['pro', 'team'] or consent_email == false", ["ann", "cy", "dee"]),
    ("now() - attributes.signup_at < days(30)", ["ann"]),
    ("attributes.signup_at < date('2026-01-01')", ["bob"]),
    ("attributes.age >= 18", ["ann"]),
    ("attributes.vip", ["cy"]),
    ("id in ['bob', 'dee'] and email != 'x'", ["bob", "dee"]),
])
def test_rules_select_by_attributes_and_behaviour(people: Store, tmp_path: Path, where: str,
                                                   expected: list[str]) -> None:
    spec = campaign(tmp_path, f'where = "{where}"')
    with people.session() as session:
        assert select_recipients(session, spec, NOW).ids == expected


def test_members_carry_status_and_erased_addresses_stay_suppressed(people: Store, tmp_path: Path) -> None:
    spec = campaign(tmp_path, 'where = "id != \'zed\'"')
    with people.session() as session:
        add_suppression(session, reason="erased", email="CY@example.test ")
    with people.session() as session:
        members = {m.recipient.id: m.status for m in build_audience(session, spec, NOW)}
    assert members == {"ann": "send", "bob": "send", "cy": "suppressed", "dee": "no_consent"}


def test_segment_names_the_latest_build_and_unknown_segments_point_at_the_column(people: Store,
                                                                                 tmp_path: Path) -> None:
    spec = campaign(tmp_path, "where = \"segment('readers') or clicks(30) > 5\"")
    with people.session() as session, pytest.raises(SpecError) as caught:
        select_recipients(session, spec, NOW)
    assert caught.value.line == 7 and caught.value.column == 9
    assert "no segments are built yet" in str(caught.value)
    with people.session() as session:
        for labels in ({"ann": "readers", "bob": "readers", "cy": "idle", "dee": "idle"},
                       {"ann": "idle", "bob": "readers", "cy": "readers", "dee": "idle"}):
            save_build(session, built_at=NOW, method="kmeans", k=2, silhouette=0.5, min_size=1, features=["x"],
                       segments=[SegmentProfile("readers", 2, {}), SegmentProfile("idle", 2, {})],
                       recipient_ids=list(labels), labels=list(labels.values()))
    with people.session() as session:
        assert select_recipients(session, spec, NOW).ids == ["bob", "cy"]
    spec = campaign(tmp_path, "where = \"segment('lurkers')\"")
    with people.session() as session, pytest.raises(SpecError, match="expected one of idle, readers"):
        select_recipients(session, spec, NOW)


def test_predicted_audiences_and_tiers_rank_by_goal_probability(people: Store, tmp_path: Path) -> None:
    content = "where = \"topic == 'sports'\""
    with people.session() as session:
        scored = select_recipients(session, campaign(tmp_path, "predicted = { min_probability = 0 }", content), NOW)
    assert scored.scores is not None and scored.tiers is not None and scored.model == "topic-goal-rates-1"
    score = dict(zip(scored.frame.ids, scored.scores.tolist(), strict=True))
    assert score["ann"] == max(score.values())  # the only one who clicks sports
    assert score["bob"] < score["ann"] and score["cy"] < score["ann"]
    threshold = float(np.sort(scored.scores)[-2:].mean())  # between the best and the rest
    with people.session() as session:
        above = select_recipients(session, campaign(tmp_path, f"predicted = {{ min_probability = {threshold} }}",
                                                    content), NOW)
        top = select_recipients(session, campaign(tmp_path, "predicted = { top_percent = 25 }", content), NOW)
        tiers = select_recipients(session, campaign(tmp_path, "where = \"tier('high')\"\n"
                                                    "tiers = { high = 25, medium = 50 }", content), NOW)
        eligible_top = select_recipients(session, campaign(tmp_path, "where = \"id != 'ann'\"\n"
                                                           "predicted = { top_percent = 33 }", content), NOW)
    assert above.ids == ["ann"]
    assert top.ids == ["ann"]
    assert tiers.ids == ["ann"]
    assert tiers.tiers is not None and tiers.tiers.tolist() == ["high", "medium", "low", "low"]  # ties: id order
    assert eligible_top.ids == ["bob"]  # a third of the three eligible; ties go to the first id


def test_holdout_is_stable_per_campaign_and_recipient_and_logged(store: Store, tmp_path: Path) -> None:
    recipients = [{"id": f"r{n:03d}", "attributes": {}} for n in range(400)]
    seed(store, recipients, [])
    spec = campaign(tmp_path, "holdout = 0.2")
    first = plan_run(store, spec, NOW)
    second = plan_run(store, spec, NOW + timedelta(days=7))
    with store.session() as session:
        held = [set(session.exec(select(Message.recipient_id).where(Message.run_id == run,
                                                                   Message.state == MessageState.HOLDOUT)).all())
                for run in (first.run_id, second.run_id)]
    assert held[0] == held[1]
    assert 0.14 < len(held[0]) / 400 < 0.26
    assert first.counts == {"send": 400 - len(held[0]), "holdout": len(held[0])}
    draws = holdout_draw("digest", [r["id"] for r in recipients])
    assert held[0] == {r["id"] for r, d in zip(recipients, draws, strict=True) if d < 0.2}
    other = holdout_draw("another-campaign", [r["id"] for r in recipients])
    assert {r["id"] for r, d in zip(recipients, other, strict=True) if d < 0.2} != held[0]
