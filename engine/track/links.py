"""The tracking endpoints behind every message: clicks, opens, one-click unsubscribes.

``/c/<token>`` records a click and redirects to the destination, ``/o/<token>`` records an open
and answers a 1x1 GIF, ``/u/<token>`` shows an unsubscribe page (GET) and unsubscribes on POST
(RFC 8058: mailbox providers POST ``List-Unsubscribe=One-Click`` without a person present).

A token is trusted only after :func:`engine.render.tokens.verify_token` accepts it and it names
a message of the store sent to that recipient; anything else gets 404 and records nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from engine.render.tokens import TokenKind, TrackingToken, token_key, verify_token
from engine.store import Message, Store, outbox
from engine.store.queries import add_suppression

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_REJECTED = "unknown or altered link"


@dataclass(frozen=True)
class TrackingRecorder:
    """Verifies tokens and records what they prove, in the store."""

    store: Store
    key: bytes
    clock: Callable[[], datetime]

    def accept(self, text: str, kind: str) -> tuple[TrackingToken, Message] | None:
        """The token and its message, or None when the token is forged, altered or names no such message."""
        token = verify_token(self.key, text, kind)
        if token is None:
            return None
        with self.store.session() as session:
            message = session.get(Message, token.message_key)
            if message is None or message.recipient_id != token.recipient_id:
                return None
            session.expunge(message)
        return token, message

    def record(self, token: TrackingToken, message: Message, event_type: str) -> None:
        now = self.clock()
        event = {"id": f"{event_type}:m{message.id}:{token.link}:{now.isoformat()}",
                 "recipient_id": message.recipient_id, "type": event_type, "ts": now,
                 "item_id": token.item_id or None, "campaign": message.campaign, "channel": message.channel,
                 "variant": message.variant, "position": token.link if token.link >= 0 else None,
                 "propensity": None, "value": None, "run_id": message.run_id, "message_id": message.id,
                 "data": {"url": token.url} if token.url else None}
        with self.store.session() as session:
            outbox.record_events(session, [event])
            if event_type == "unsubscribe":
                add_suppression(session, reason="unsubscribe", recipient_id=message.recipient_id, channel="email",
                                detail=f"one-click, campaign {message.campaign}")


def link_routes(store: Store, secret: bytes, clock: Callable[[], datetime]) -> list[Route]:
    """The routes ``/c``, ``/o`` and ``/u`` for tokens signed with ``secret``."""
    recorder = TrackingRecorder(store, token_key(secret), clock)

    async def click(request: Request) -> Response:
        accepted = recorder.accept(request.path_params["token"], TokenKind.CLICK)
        if accepted is None:
            return PlainTextResponse(_REJECTED, status_code=404)
        recorder.record(*accepted, "click")
        return RedirectResponse(accepted[0].url, status_code=302)

    async def open_pixel(request: Request) -> Response:
        accepted = recorder.accept(request.path_params["token"], TokenKind.OPEN)
        if accepted is None:
            return PlainTextResponse(_REJECTED, status_code=404)
        recorder.record(*accepted, "open")
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})

    async def unsubscribe(request: Request) -> Response:
        accepted = recorder.accept(request.path_params["token"], TokenKind.UNSUBSCRIBE)
        if accepted is None:
            return PlainTextResponse(_REJECTED, status_code=404)
        if request.method == "GET":
            return HTMLResponse(f'<!DOCTYPE html><title>Unsubscribe</title><form method="post">'
                                f'<p>Stop emails from {escape(accepted[1].campaign)}?</p>'
                                '<button name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>')
        recorder.record(*accepted, "unsubscribe")
        return HTMLResponse("<!DOCTYPE html><title>Unsubscribed</title><p>You are unsubscribed.</p>")

    return [
        Route("/c/{token}", click, methods=["GET"]),
        Route("/o/{token}", open_pixel, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
    ]
