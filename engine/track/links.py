"""The tracking endpoints behind every message: clicks, opens, one-click unsubscribes.

``/c/<token>`` records a click and redirects to the destination, ``/o/<token>`` records an open
and answers a 1x1 GIF, ``/u/<token>`` shows an unsubscribe page (GET) and unsubscribes on POST
(RFC 8058: mailbox providers POST ``List-Unsubscribe=One-Click`` without a person present).

A token is trusted only after :func:`engine.render.tokens.verify_token` accepts it and it names
a message of the store sent to that recipient; anything else gets 404 and records nothing.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from engine.render.tokens import TokenKind, TrackingToken, token_key, verify_token
from engine.store import Store, outbox
from engine.store.outbox import MessageRef
from engine.store.queries import add_suppression
from engine.track.batching import BatchWriter

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_REJECTED = "unknown or altered link"


class TrackingRecorder:
    """Verifies tokens and records what they prove, in batches.

    A token is checked in the request (its signature) and again in the batch write (that it
    names a stored message sent to that recipient); the request learns the second answer when
    its batch is committed, so a 302 or a pixel is only answered for an event that is stored.
    """

    def __init__(self, store: Store, key: bytes, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.writer = BatchWriter(self._record_batch, in_thread=store.dialect != "sqlite")

    def verify(self, text: str, kind: str) -> TrackingToken | None:
        return verify_token(self.key, text, kind)

    async def record(self, token: TrackingToken, event_type: str) -> bool:
        """Record ``event_type`` for a verified token; False when it names no such message."""
        [stored] = await self.writer.submit([{"token": token, "type": event_type, "ts": self.clock()}])
        return bool(stored)

    async def message(self, token: TrackingToken) -> MessageRef | None:
        """The message a verified token names, if it is stored and was sent to that recipient."""
        found = await asyncio.to_thread(self._messages, [token])
        return found.get(token.message_key)

    def _messages(self, tokens: list[TrackingToken]) -> dict[int, MessageRef]:
        with self.store.session() as session:
            messages = outbox.message_refs(session, sorted({t.message_key for t in tokens}))
        return {key: ref for key, ref in messages.items()
                if any(t.message_key == key and t.recipient_id == ref.recipient_id for t in tokens)}

    def _record_batch(self, hits: list[dict[str, Any]]) -> list[bool]:
        with self.store.session() as session:
            messages = outbox.message_refs(session, sorted({h["token"].message_key for h in hits}))
            events, stored = [], []
            for hit in hits:
                token, event_type, now = hit["token"], hit["type"], hit["ts"]
                message = messages.get(token.message_key)
                if message is None or message.recipient_id != token.recipient_id:
                    stored.append(False)
                    continue
                stored.append(True)
                events.append({
                    "id": f"{event_type}:m{message.id}:{token.link}:{now.isoformat()}",
                    "recipient_id": message.recipient_id, "type": event_type, "ts": now,
                    "item_id": token.item_id or None, "campaign": message.campaign, "channel": message.channel,
                    "variant": message.variant, "position": token.link if token.link >= 0 else None,
                    "propensity": None, "value": None, "run_id": message.run_id, "message_id": message.id,
                    "data": {"url": token.url} if token.url else None})
                if event_type == "unsubscribe":
                    add_suppression(session, reason="unsubscribe", recipient_id=message.recipient_id,
                                    channel="email", detail=f"one-click, campaign {message.campaign}")
            outbox.record_events(session, events)
        return stored


def link_routes(store: Store, secret: bytes, clock: Callable[[], datetime]) -> list[Route]:
    """The routes ``/c``, ``/o`` and ``/u`` for tokens signed with ``secret``."""
    recorder = TrackingRecorder(store, token_key(secret), clock)
    rejected = PlainTextResponse(_REJECTED, status_code=404)

    async def click(request: Request) -> Response:
        token = recorder.verify(request.path_params["token"], TokenKind.CLICK)
        if token is None or not await recorder.record(token, "click"):
            return rejected
        return RedirectResponse(token.url, status_code=302)

    async def open_pixel(request: Request) -> Response:
        token = recorder.verify(request.path_params["token"], TokenKind.OPEN)
        if token is None or not await recorder.record(token, "open"):
            return rejected
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})

    async def unsubscribe(request: Request) -> Response:
        token = recorder.verify(request.path_params["token"], TokenKind.UNSUBSCRIBE)
        if token is None:
            return rejected
        if request.method == "GET":
            message = await recorder.message(token)
            if message is None:
                return rejected
            return HTMLResponse(f'<!DOCTYPE html><title>Unsubscribe</title><form method="post">'
                                f'<p>Stop emails from {escape(message.campaign)}?</p>'
                                '<button name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>')
        if not await recorder.record(token, "unsubscribe"):
            return rejected
        return HTMLResponse("<!DOCTYPE html><title>Unsubscribed</title><p>You are unsubscribed.</p>")

    return [
        Route("/c/{token}", click, methods=["GET"]),
        Route("/o/{token}", open_pixel, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
    ]
