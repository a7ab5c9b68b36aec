"""POST /events over real HTTP: the API key, validation, idempotence, batching."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select

from engine.config import Settings, TrackingSettings
from engine.store import Event, Store
from engine.track.app import tracking_app
from tests.conftest import serving

KEY = "test-ingest-key"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings(), tracking=TrackingSettings(api_key=KEY))


def events_in(store: Store) -> int:
    with store.session() as session:
        return int(session.exec(select(func.count()).select_from(Event)).one())


def test_ingest_needs_the_key_validates_everything_and_is_idempotent(settings: Settings, store: Store) -> None:
    event = {"id": "conv-1", "recipient_id": "r1", "type": "conversion", "ts": "2026-11-23T10:00:00+01:00",
             "campaign": "digest", "value": 42.5}
    with serving(tracking_app(settings, store)) as base, httpx.Client(base_url=base) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.post("/events", json=event).status_code == 401
        assert client.post("/events", json=event, headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        bad = client.post("/events", json=[event, {**event, "id": "conv-2", "ts": "2026-11-23T10:00:00"}],
                          headers=auth)
        assert bad.status_code == 400
        assert bad.json()["index"] == 1 and bad.json()["field"] == "ts" and "offset" in bad.json()["error"]
        assert events_in(store) == 0  # one bad event rejects the whole body
        assert client.post("/events", content=b"{not json", headers=auth).status_code == 400
        accepted = client.post("/events", json=event, headers=auth)
        assert accepted.status_code == 202 and accepted.json() == {"accepted": 1}
        assert client.post("/events", json=event, headers=auth).status_code == 202  # a retry is harmless
    assert events_in(store) == 1
    with store.session() as session:
        stored = session.get(Event, "conv-1")
    assert stored is not None and stored.value == 42.5 and stored.ts.hour == 9


def test_ingest_is_disabled_without_a_key(store: Store) -> None:
    with serving(tracking_app(Settings(), store)) as base:
        response = httpx.post(f"{base}/events", json={}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 503 and "KAIROS_API_KEY" in response.json()["error"]


def test_concurrent_requests_are_all_stored(settings: Settings, store: Store) -> None:
    async def post_many(base: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
            responses = await asyncio.gather(*(
                client.post("/events", json={"recipient_id": f"r{n}", "type": "signup",
                                             "ts": "2026-11-23T10:00:00Z"}) for n in range(200)))
        return [r.status_code for r in responses]

    with serving(tracking_app(settings, store)) as base:
        codes = asyncio.run(post_many(base))
    assert codes == [202] * 200
    assert events_in(store) == 200
