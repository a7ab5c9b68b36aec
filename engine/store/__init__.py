"""The store: sqlmodel tables, the database handle and typed queries (the only SQL in Kairos)."""

from engine.store.db import Store
from engine.store.tables import (
    Campaign,
    ContentItem,
    Device,
    Event,
    Message,
    MessageState,
    ModelVersion,
    Recipient,
    Run,
    RunState,
    Suppression,
    utcnow,
)

__all__ = [
    "Campaign", "ContentItem", "Device", "Event", "Message", "MessageState", "ModelVersion", "Recipient",
    "Run", "RunState", "Store", "Suppression", "utcnow",
]
