"""Write a simulated population, catalog and history into a store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.sim.population import Catalog, Population
from engine.sim.respond import SimEvents
from engine.store import ContentItem, Event, Recipient, Store
from engine.store.db import upsert

CHUNK = 5000


def seed_store(store: Store, population: Population, catalogs: list[Catalog], events: SimEvents | list[dict[str, Any]],
               now: datetime) -> None:
    """Insert recipients and content, then events (idempotent: re-seeding updates in place)."""
    recipients = []
    for row in population.recipient_rows():
        attributes = {k: v for k, v in row.items()
                      if k not in ("id", "email", "timezone", "locale", "consent_email", "consent_push")}
        recipients.append({"id": row["id"], "email": row["email"], "timezone": row["timezone"],
                           "locale": row["locale"], "consent_email": row["consent_email"],
                           "consent_push": row["consent_push"], "attributes": attributes,
                           "created_at": now, "updated_at": now})
    rows = events.rows() if isinstance(events, SimEvents) else events
    content = [{**row, "updated_at": now} for catalog in catalogs for row in catalog.content_rows()]
    with store.session() as session:
        for start in range(0, len(recipients), CHUNK):
            upsert(session, Recipient, recipients[start:start + CHUNK], ["id"],
                   ["email", "timezone", "consent_email", "consent_push", "attributes", "updated_at"])
        upsert(session, ContentItem, content, ["id"], ["title", "url", "topic", "published_at", "attributes"])
    write_events(store, rows)


def write_events(store: Store, rows: SimEvents | list[dict[str, Any]]) -> None:
    """Insert simulated events (idempotent on their ids)."""
    rows = rows.rows() if isinstance(rows, SimEvents) else rows
    with store.session() as session:
        for start in range(0, len(rows), CHUNK):
            upsert(session, Event, rows[start:start + CHUNK], ["id"])
