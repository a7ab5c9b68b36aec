"""Consent per channel, with its source and time.

``Recipient.consent_email`` and ``consent_push`` hold the current state, and they are what
planning and sending check (through :func:`engine.audience.build.reachable`). Every change is
also written as a :class:`ConsentRecord` — granted or withdrawn, on which channel, said where
(``source``: an import file, a form, a support ticket) and when — so the state always has a
history behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.store.tables import ConsentRecord, Recipient, utcnow

CHANNELS = ("email", "push")
IN_CHUNK = 900


@dataclass(frozen=True)
class ConsentChange:
    """What one imported row says about one channel."""

    recipient_id: str
    channel: str
    granted: bool
    source: str
    at: datetime


def latest_consents(session: Session, recipient_ids: Sequence[str]) -> dict[tuple[str, str], bool]:
    """{(recipient_id, channel): granted} of the latest record, for those that have one."""
    latest: dict[tuple[str, str], tuple[datetime, int, bool]] = {}
    for start in range(0, len(recipient_ids), IN_CHUNK):
        chunk = list(recipient_ids[start:start + IN_CHUNK])
        rows = session.execute(sa.select(col(ConsentRecord.recipient_id), col(ConsentRecord.channel),
                                         col(ConsentRecord.at), col(ConsentRecord.id), col(ConsentRecord.granted))
                               .where(col(ConsentRecord.recipient_id).in_(chunk))).all()
        for recipient_id, channel, at, record_id, granted in rows:
            key = (recipient_id, channel)
            if key not in latest or (at, record_id or 0) > latest[key][:2]:
                latest[key] = (at, record_id or 0, granted)
    return {key: value[2] for key, value in latest.items()}


def record_changes(session: Session, changes: Sequence[ConsentChange], now: datetime | None = None) -> int:
    """Write a record for each change that differs from the latest one (or is the first); returns how many.

    Idempotent: importing the same file twice records nothing the second time.
    """
    latest = latest_consents(session, sorted({c.recipient_id for c in changes}))
    moment = now or utcnow()
    rows = []
    for change in changes:
        key = (change.recipient_id, change.channel)
        if latest.get(key) is change.granted:
            continue
        latest[key] = change.granted
        rows.append({"recipient_id": change.recipient_id, "channel": change.channel, "granted": change.granted,
                     "source": change.source[:200], "at": change.at, "recorded_at": moment})
    if rows:
        session.execute(sa.insert(ConsentRecord), rows)
    return len(rows)


def set_consent(session: Session, recipient_id: str, channel: str, granted: bool, source: str,
                at: datetime | None = None) -> bool:
    """Grant or withdraw consent now (a form, an unsubscribe page, a support request).

    Updates the current state that plans and sends check, and records the change. Returns False
    when there is no such recipient.
    """
    if channel not in CHANNELS:
        raise ValueError(f"consent is per channel: one of {', '.join(CHANNELS)}")
    recipient = session.get(Recipient, recipient_id)
    if recipient is None:
        return False
    moment = at or utcnow()
    setattr(recipient, f"consent_{channel}", granted)
    recipient.updated_at = moment
    session.add(recipient)
    record_changes(session, [ConsentChange(recipient_id, channel, granted, source, moment)])
    return True


def consent_history(session: Session, recipient_id: str) -> list[dict[str, Any]]:
    rows = session.exec(select(ConsentRecord).where(ConsentRecord.recipient_id == recipient_id)
                        .order_by(col(ConsentRecord.at), col(ConsentRecord.id))).all()
    return [{"channel": r.channel, "granted": r.granted, "source": r.source, "at": r.at.isoformat(),
             "recorded_at": r.recorded_at.isoformat()} for r in rows]
