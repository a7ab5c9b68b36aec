"""A large audience is planned a chunk at a time, with the same plan as planned at once."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import select

from engine.learn.sendtime import HourEvidence
from engine.schedule.planning import plan_run, planned_chunks
from engine.spec import CampaignSpec, load_campaign
from engine.store import ContentItem, Device, Event, Message, Recipient, Store
from engine.store.db import upsert
from engine.store.queries import add_suppression
from tests.conftest import ROOT

NOW = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
ZONES = ("Europe/Madrid", "Asia/Tokyo", "America/New_York", "UTC")


def campaign(tmp_path: Path, extra: str = "", channels: str = '["email"]', cap: int = 2) -> CampaignSpec:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent("""
        [campaign]
        name = "digest"
        goal = "click"

        [audience]
        holdout = 0.1
        frequency_cap = { max = CAP, per = "7d" }

        [content]
        pool = "news"

        [channels]
        allowed = CHANNELS

        [[variants]]
        name = "a"
        subject = "Hi"
        template = "digest"
        push_title = "Hi"
        push_body = "News"
        """).replace("CHANNELS", channels).replace("CAP", str(cap)) + textwrap.dedent(extra))
    return load_campaign(path, ROOT / "templates")


def seed(store: Store, size: int, rng: np.random.Generator) -> None:
    """``size`` recipients across four zones who open at hours of their own, some capped, some
    suppressed, some without consent."""
    recipients = [{"id": f"r{n:04d}", "email": f"r{n}@example.test", "timezone": ZONES[n % 4], "locale": "en",
                   "consent_email": n % 17 != 0, "consent_push": False, "attributes": {},
                   "created_at": NOW, "updated_at": NOW} for n in range(size)]
    events: list[dict[str, Any]] = []
    for n in range(size):
        own = int(rng.integers(0, 24))
        for day in range(int(rng.integers(0, 6))):
            ts = NOW - timedelta(days=day + 1) + timedelta(hours=own - 6)
            message = n * 10 + day
            events.append({"id": f"s{message}", "recipient_id": f"r{n:04d}", "type": "sent", "campaign": "digest",
                           "ts": ts - timedelta(hours=int(rng.integers(0, 12))), "message_id": message,
                           "position": 0})
            if rng.random() < 0.7:
                events.append({"id": f"o{message}", "recipient_id": f"r{n:04d}", "type": "open", "ts": ts,
                               "message_id": message})
    items = [{"id": f"n{j}", "pool": "news", "title": f"News {j}", "url": f"https://x.test/{j}", "topic": "t",
              "published_at": NOW - timedelta(hours=j + 1), "attributes": {}, "updated_at": NOW} for j in range(3)]
    with store.session() as session:
        upsert(session, Recipient, recipients, ["id"])
        upsert(session, ContentItem, items, ["id"])
        upsert(session, Event, events, ["id"])
        for n in range(0, size, 23):
            add_suppression(session, reason="unsubscribe", recipient_id=f"r{n:04d}", channel="email")


def plans(store: Store, spec: CampaignSpec, size: int, wall_clock: datetime | None = None) -> list[Any]:
    with store.session() as session:
        return [(p.member.recipient.id, p.member.status, p.send_time)
                for chunk in planned_chunks(session, spec, NOW, rng=np.random.default_rng(3), wall_clock=wall_clock,
                                            size=size)
                for p in chunk]


def test_chunks_plan_the_same_statuses_and_send_times_as_the_whole_audience(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    seed(store, 300, np.random.default_rng(1))
    for extra in ("", '[schedule]\nsend_time = "optimize"\n[optimize]\nexploration = 0.3\n'):
        spec = campaign(tmp_path, extra)
        whole = plans(store, spec, 10_000)
        assert [p[:2] for p in plans(store, spec, 7)] == [p[:2] for p in whole]
        assert plans(store, spec, 7) == whole
        statuses = {status for _, status, _ in whole}
        assert statuses == {"send", "holdout", "suppressed", "capped", "no_consent"}
    # zones planned apart draw their exploration in another order in chunks: compared without it
    spec = campaign(tmp_path, '[schedule]\nsend_time = "optimize"\n[optimize]\nexploration = 0.0\n')
    local = datetime(2026, 12, 1, 9, 0)
    assert plans(store, spec, 11, wall_clock=local) == plans(store, spec, 10_000, wall_clock=local)


def test_optimized_send_times_use_the_whole_audience_prior_in_every_chunk(tmp_path: Path) -> None:
    """Each chunk alone would learn another population profile; the first pass makes them agree."""
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    seed(store, 120, np.random.default_rng(2))
    spec = campaign(tmp_path, '[schedule]\nsend_time = "optimize"\n', cap=100)
    whole = plans(store, spec, 10_000)
    chunked = plans(store, spec, 40)
    assert chunked == whole
    with store.session() as session:
        from engine.learn import sendtime
        ids = [r for r, status, _ in whole if status == "send"]
        zones = [ZONES[int(r[1:]) % 4] for r in ids]
        parts = [sendtime.activity_by_hour_of_week(session, ids[i:i + 40], zones[i:i + 40], NOW)
                 for i in range(0, len(ids), 40)]
        everyone = sendtime.activity_by_hour_of_week(session, ids, zones, NOW)
    summed = HourEvidence()
    for part in parts:
        summed.add(part.week_counts, part)
    at_once = HourEvidence.of(everyone.week_counts, everyone).prior()
    prior = summed.prior()
    np.testing.assert_allclose(prior.population, at_once.population)
    assert prior.concentration == at_once.concentration and prior.sent == at_once.sent > 0
    assert prior.rates is not None and at_once.rates is not None
    np.testing.assert_allclose(prior.rates.prompted, at_once.rates.prompted)
    np.testing.assert_allclose(prior.rates.later, at_once.rates.later)
    alone = HourEvidence.of(parts[0].week_counts, parts[0]).prior()
    assert not np.allclose(alone.population, at_once.population)
    # The answer rates' second estimate reads the audience again, a chunk at a time, with the first.
    with store.session() as session:
        chunked = sendtime.hour_prior(session, spec.schedule,
                                      lambda: ((ids[i:i + 40], zones[i:i + 40]) for i in range(0, len(ids), 40)), NOW)
    learned = sendtime.learn_prior(everyone.week_counts, everyone)
    assert chunked.rates is not None and learned.rates is not None
    np.testing.assert_allclose(chunked.rates.prompted, learned.rates.prompted)
    np.testing.assert_allclose(chunked.rates.later, learned.rates.later)
    assert not np.allclose(learned.rates.answered, at_once.rates.answered)


def test_a_push_only_recipient_with_a_device_is_planned(tmp_path: Path) -> None:
    """Reachability on push is an active device: one without an email address is planned, one
    whose only device was deactivated has no way to be reached."""
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    with store.session() as session:
        upsert(session, Recipient, [{"id": r, "email": None, "timezone": "UTC", "locale": "en",
                                     "consent_email": False, "consent_push": True, "attributes": {},
                                     "created_at": NOW, "updated_at": NOW} for r in ("p1", "p2", "p3")], ["id"])
        upsert(session, ContentItem, [{"id": "n1", "pool": "news", "title": "News", "url": "https://x.test/1",
                                       "topic": "t", "published_at": NOW - timedelta(hours=1), "attributes": {},
                                       "updated_at": NOW}], ["id"])
        session.add_all([Device(recipient_id="p1", platform="fcm", token="t1", active=True, created_at=NOW,
                                updated_at=NOW),
                         Device(recipient_id="p2", platform="fcm", token="t2", active=False, created_at=NOW,
                                updated_at=NOW)])
    spec = campaign(tmp_path, channels='["push"]')
    run = plan_run(store, spec, NOW, rng=np.random.default_rng(0))
    with store.session() as session:
        states = {m.recipient_id: m.state for m in session.exec(select(Message).where(Message.run_id == run.run_id))}
    assert states == {"p1": "planned", "p2": "no_consent", "p3": "no_consent"}
