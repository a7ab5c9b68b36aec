"""The tracking server: an ASGI app (Starlette) that turns HTTP requests into events.

Routes: ``GET /health``; ``POST /events`` (the ingest API, needs the API key as
``Authorization: Bearer <key>``); and, when a tracking secret is configured, the link endpoints
of :mod:`engine.track.links` (``/c`` clicks, ``/o`` opens, ``/u`` one-click unsubscribes).
Ingested events from concurrent requests are grouped into few transactions by a
:class:`BatchWriter`; a request is answered only once its rows are stored.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.config import Settings
from engine.errors import StoreError
from engine.store import Store, outbox
from engine.track.batching import BatchWriter
from engine.track.ingest import InvalidEvent, parse_events
from engine.track.links import link_routes

MAX_BODY = 1_000_000


class Tracker:
    """The state behind the routes: the store and the batch writer of events."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.events = BatchWriter(self._write_events, in_thread=store.dialect != "sqlite")

    def _write_events(self, rows: list[dict[str, Any]]) -> list[None]:
        with self.store.session() as session:
            outbox.record_events(session, rows)
        return [None] * len(rows)

    def authorized(self, request: Request) -> bool:
        key = self.settings.tracking.api_key
        given = request.headers.get("authorization", "")
        return key is not None and given.startswith("Bearer ") and hmac.compare_digest(
            given.removeprefix("Bearer ").encode(), key.encode())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ingest(self, request: Request) -> Response:
        if self.settings.tracking.api_key is None:
            return JSONResponse({"error": f"event ingest is disabled: set ${self.settings.tracking.api_key_env}"},
                                status_code=503)
        if not self.authorized(request):
            return JSONResponse({"error": "missing or wrong API key (Authorization: Bearer <key>)"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, status_code=413)
        try:
            rows = parse_events(json.loads(body))
        except json.JSONDecodeError as exc:
            return JSONResponse({"error": f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"},
                                status_code=400)
        except InvalidEvent as exc:
            return JSONResponse({"error": str(exc), "index": exc.index, "field": exc.field}, status_code=400)
        try:
            await self.events.submit(rows)
        except StoreError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"accepted": len(rows)}, status_code=202)


def tracking_app(settings: Settings, store: Store, clock: Callable[[], datetime] | None = None) -> Starlette:
    """The tracking server's ASGI app; ``clock`` stamps click, open and unsubscribe events."""
    tracker = Tracker(settings, store)
    routes = [
        Route("/health", tracker.health, methods=["GET"]),
        Route("/events", tracker.ingest, methods=["POST"]),
    ]
    if settings.tracking.secret is not None:
        routes += link_routes(store, settings.tracking.secret, clock or (lambda: datetime.now(UTC)))
    return Starlette(routes=routes)
