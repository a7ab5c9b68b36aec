"""``POST /events``: conversions and custom events from the outside world, validated.

The body is one event object or a JSON array of them, in the shape of ``kairos import events``
rows (``recipient_id``, ``type``, ``ts`` with an offset, optional ``id``, ``item_id``,
``campaign``, ``channel``, ``variant``, ``position``, ``propensity``, ``value``). The whole body
is validated first: one bad event rejects the request (400, naming its index and field) and
nothing of it is stored. Events are idempotent on ``id`` (or the derived id), so a client may
retry safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.store.imports import RowError, parse_event

MAX_EVENTS = 1000


@dataclass(frozen=True)
class InvalidEvent(ValueError):
    """Event ``index`` of the body is invalid at ``field``."""

    index: int | None
    field: str | None
    problem: str

    def __str__(self) -> str:
        where = "" if self.index is None else f"events[{self.index}]"
        if self.field:
            where = f"{where}.{self.field}" if where else self.field
        return f"{where}: {self.problem}" if where else self.problem


def parse_events(payload: Any) -> list[dict[str, Any]]:
    """Validate a request body into event rows, or raise :class:`InvalidEvent`."""
    events = payload if isinstance(payload, list) else [payload]
    if not events:
        raise InvalidEvent(None, None, "expected an event object or a non-empty array of them")
    if len(events) > MAX_EVENTS:
        raise InvalidEvent(None, None, f"at most {MAX_EVENTS} events per request, got {len(events)}")
    rows = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise InvalidEvent(index, None, "expected a JSON object")
        try:
            rows.append(parse_event(event))
        except RowError as exc:
            raise InvalidEvent(index, exc.column, str(exc)) from None
    return rows
