"""Everything stored about one recipient: exported as JSON, or erased leaving only a hashed suppression.

Erasure deletes the recipient, their devices, consent history, events, messages and segment
memberships, and their plain suppressions; what remains is a suppression keyed by the SHA-256 of
their address and of their id, so a later import of the same address (or id) is recognized and
never contacted, without keeping either in the clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from engine.store import segments
from engine.store.consent import consent_history
from engine.store.queries import address_hash, recipient_hash
from engine.store.tables import ConsentRecord, Device, Event, Message, Recipient, Suppression

ERASED = "erased"


def _plain(row: SQLModel) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in row.model_dump().items()}


def export_recipient(session: Session, recipient_id: str) -> dict[str, Any] | None:
    """Everything stored about ``recipient_id`` as JSON-ready data, or None if there is no such recipient."""
    recipient = session.get(Recipient, recipient_id)
    if recipient is None:
        return None
    hashes = [recipient_hash(recipient_id)] + ([address_hash(recipient.email)] if recipient.email else [])
    suppressions = session.exec(select(Suppression).where(
        sa.or_(col(Suppression.recipient_id) == recipient_id, col(Suppression.address_hash).in_(hashes)))
        .order_by(col(Suppression.id))).all()
    return {
        "recipient": _plain(recipient),
        "consent": consent_history(session, recipient_id),
        "devices": [_plain(d) for d in session.exec(select(Device).where(Device.recipient_id == recipient_id)
                                                     .order_by(col(Device.id))).all()],
        "events": [_plain(e) for e in session.exec(select(Event).where(Event.recipient_id == recipient_id)
                                                    .order_by(col(Event.ts), col(Event.id))).all()],
        "messages": [_plain(m) for m in session.exec(select(Message).where(Message.recipient_id == recipient_id)
                                                      .order_by(col(Message.id))).all()],
        "suppressions": [_plain(s) for s in suppressions],
        "segments": segments.recipient_segments(session, recipient_id),
    }


@dataclass(frozen=True)
class Erasure:
    """What an erasure deleted, per kind of row; ``already`` when only the hashed suppression was left."""

    recipient_id: str
    deleted: dict[str, int]
    already: bool = False


def is_erased(session: Session, recipient_id: str) -> bool:
    return session.exec(select(Suppression.id).where(Suppression.address_hash == recipient_hash(recipient_id),
                                                     Suppression.reason == ERASED)).first() is not None


def erase_recipient(session: Session, recipient_id: str, now: datetime) -> Erasure | None:
    """Delete everything about ``recipient_id`` and keep a hashed suppression; None if unknown."""
    recipient = session.get(Recipient, recipient_id)
    if recipient is None:
        return Erasure(recipient_id, {}, already=True) if is_erased(session, recipient_id) else None
    hashes = [recipient_hash(recipient_id)] + ([address_hash(recipient.email)] if recipient.email else [])
    deleted: dict[str, int] = {}
    for name, table, column in (("events", Event, Event.recipient_id), ("messages", Message, Message.recipient_id),
                                ("devices", Device, Device.recipient_id),
                                ("consent records", ConsentRecord, ConsentRecord.recipient_id),
                                ("suppressions", Suppression, Suppression.recipient_id)):
        result = session.execute(sa.delete(table).where(col(column) == recipient_id))
        deleted[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    deleted["segment memberships"] = segments.delete_recipient(session, recipient_id)
    session.delete(recipient)
    deleted["recipient"] = 1
    for digest in hashes:
        exists = session.exec(select(Suppression.id).where(Suppression.address_hash == digest,
                                                           Suppression.channel == "all")).first()
        if exists is None:
            session.add(Suppression(recipient_id=None, address_hash=digest, channel="all", reason=ERASED,
                                    detail=None, created_at=now))
    return Erasure(recipient_id, deleted)
