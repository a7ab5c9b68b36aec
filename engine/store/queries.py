"""Typed read queries: recipients, content, event statistics and suppressions.

Stages never write SQL; they call these. Reads that feed numpy return plain tuples or dicts of
lists rather than ORM objects, so a million rows do not become a million Python objects twice.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import warnings
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.errors import StoreError
from engine.store.db import upsert
from engine.store.tables import (
    Campaign,
    ContentItem,
    Device,
    Event,
    ModelVersion,
    Recipient,
    StoredSecret,
    Suppression,
    utcnow,
)

IN_CHUNK = 900  # stay under SQLite's bound-parameter limit in IN (...) lists


def address_hash(email: str) -> str:
    """SHA-256 of a normalized address: how an erased recipient stays suppressed."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def recipient_hash(recipient_id: str) -> str:
    """SHA-256 of a recipient id: how an erased recipient without an address stays suppressed."""
    return hashlib.sha256(b"recipient\x1f" + recipient_id.encode()).hexdigest()


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start:start + IN_CHUNK]


class RecipientRow(NamedTuple):
    """A recipient's columns, as the pump and the audience read them (a batch makes a thousand)."""

    id: str
    email: str | None
    timezone: str
    locale: str | None
    consent_email: bool
    consent_push: bool
    attributes: dict[str, Any]
    has_device: bool = False  # an active push device (FCM, APNs or Web Push)


_HAS_DEVICE = (sa.exists().where(col(Device.recipient_id) == col(Recipient.id), col(Device.active))
               .correlate(Recipient).label("has_device"))
_RECIPIENT_COLUMNS = sa.select(*(col(c) for c in (Recipient.id, Recipient.email, Recipient.timezone,
                                                  Recipient.locale, Recipient.consent_email,
                                                  Recipient.consent_push, Recipient.attributes)), _HAS_DEVICE)


def all_recipients(session: Session) -> list[RecipientRow]:
    """Every recipient, in id order (the order audiences and plans are written in)."""
    rows = session.execute(_RECIPIENT_COLUMNS.order_by(col(Recipient.id))).all()
    return [RecipientRow(*row) for row in rows]


def first_recipients(session: Session, limit: int) -> list[RecipientRow]:
    """The first ``limit`` recipients with an email address, in id order (samples for previews)."""
    rows = session.execute(_RECIPIENT_COLUMNS.where(col(Recipient.email).is_not(None))
                           .order_by(col(Recipient.id)).limit(limit)).all()
    return [RecipientRow(*row) for row in rows]


# The queries a sending batch runs, built once: ``IN`` lists are expanding parameters, so no
# statement is built per batch (and none is left for the cyclic garbage collector to find).
_RECIPIENTS_BY_ID = _RECIPIENT_COLUMNS.where(col(Recipient.id).in_(sa.bindparam("ids", expanding=True)))
_SUPPRESSED_IDS = sa.select(col(Suppression.recipient_id)).where(
    col(Suppression.recipient_id).in_(sa.bindparam("ids", expanding=True)),
    col(Suppression.channel).in_(sa.bindparam("channels", expanding=True)))
_SUPPRESSED_HASHES = sa.select(col(Suppression.address_hash)).where(
    col(Suppression.address_hash).in_(sa.bindparam("hashes", expanding=True)),
    col(Suppression.channel).in_(sa.bindparam("channels", expanding=True)))


def recipients_by_id(session: Session, ids: Sequence[str]) -> dict[str, RecipientRow]:
    found: dict[str, RecipientRow] = {}
    for chunk in _chunks(ids):
        rows = session.execute(_RECIPIENTS_BY_ID, {"ids": list(chunk)}).all()
        found.update((row[0], RecipientRow(*row)) for row in rows)
    return found


def pool_items(session: Session, pool: str) -> list[ContentItem]:
    """The items of a content pool, oldest first (stable order for ties)."""
    return list(session.exec(select(ContentItem).where(ContentItem.pool == pool)
                             .order_by(col(ContentItem.published_at), col(ContentItem.id))).all())


def pool_names(session: Session) -> list[str]:
    return list(session.exec(select(ContentItem.pool).distinct()).all())


def _occurrences() -> sa.ColumnElement[int]:
    """COUNT of events, where the per-slot `sent` events of one message count once.

    A message with k items logs k `sent` events (one per slot, like imported impressions), so
    "how many messages did they get" counts distinct messages: the message id where there is
    one, else (for imported history) the campaign and time the impressions share.
    """
    imported = sa.func.coalesce(col(Event.campaign), "") + "@" + sa.cast(col(Event.ts), sa.String)
    per_message = sa.case((col(Event.type) == "sent",
                           sa.func.coalesce(sa.cast(col(Event.message_id), sa.String), imported)),
                          else_=col(Event.id))
    return sa.func.count(sa.distinct(per_message))


def recipient_event_counts(session: Session, types: Sequence[str], since: datetime,
                           recipient_ids: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
    """{(recipient_id, type): count} since a time, for everyone or for the given recipients."""
    counts: dict[tuple[str, str], int] = {}
    chunks: Iterable[Sequence[str] | None] = [None] if recipient_ids is None else _chunks(recipient_ids)
    for chunk in chunks:
        query = (select(Event.recipient_id, Event.type, _occurrences())
                 .where(col(Event.type).in_(types), Event.ts >= since))
        if chunk is not None:
            query = query.where(col(Event.recipient_id).in_(chunk))
        for recipient_id, kind, count in session.exec(query.group_by(col(Event.recipient_id),
                                                                     col(Event.type))).all():
            counts[(recipient_id, kind)] = int(count)
    return counts


def last_event_times(session: Session, kind: str) -> dict[str, datetime]:
    """{recipient_id: time of their latest event of ``kind``}."""
    rows = session.exec(select(Event.recipient_id, sa.func.max(Event.ts)).where(Event.type == kind)
                        .group_by(col(Event.recipient_id))).all()
    return {recipient_id: moment for recipient_id, moment in rows if moment is not None}


def variant_outcomes(session: Session, campaign: str, goal_event: str) -> dict[str, tuple[int, int]]:
    """{variant: (sends, goal events)} for a campaign, across all its runs.

    A goal event counts when it names the campaign and variant (tracked links and pixels do).
    """
    sent = dict(session.exec(select(Event.variant, sa.func.count(sa.distinct(col(Event.message_id))))
                             .where(Event.campaign == campaign, Event.type == "sent")
                             .group_by(col(Event.variant))).all())
    goals = dict(session.exec(select(Event.variant, sa.func.count(sa.distinct(col(Event.message_id))))
                              .where(Event.campaign == campaign, Event.type == goal_event)
                              .group_by(col(Event.variant))).all())
    return {str(v): (int(n), int(goals.get(v, 0))) for v, n in sent.items() if v is not None}


def suppressed_recipients(session: Session, recipients: Sequence[RecipientRow], channel: str) -> set[str]:
    """The ids among ``recipients`` that must not be contacted on ``channel``."""
    by_hash = {address_hash(r.email): r.id for r in recipients if r.email}
    by_hash.update((recipient_hash(r.id), r.id) for r in recipients)
    found: set[str] = set()
    channels = ["all", channel]
    ids = [r.id for r in recipients]
    for chunk in _chunks(ids):
        found.update(r for r in session.execute(_SUPPRESSED_IDS, {"ids": list(chunk), "channels": channels}).scalars()
                     if r is not None)
    hashes = list(by_hash)
    for chunk in _chunks(hashes):
        found.update(by_hash[h] for h in session.execute(_SUPPRESSED_HASHES, {"hashes": list(chunk),
                                                                              "channels": channels}).scalars()
                     if h is not None)
    return found


def add_suppression(session: Session, *, reason: str, recipient_id: str | None = None,
                    email: str | None = None, channel: str = "all", detail: str | None = None) -> bool:
    """Suppress a recipient (and their address); returns False if already suppressed so."""
    digest = address_hash(email) if email else None
    query = select(Suppression.id).where(Suppression.channel == channel, Suppression.reason == reason)
    if recipient_id is not None:
        query = query.where(Suppression.recipient_id == recipient_id)
    else:
        query = query.where(Suppression.address_hash == digest)
    if session.exec(query).first() is not None:
        return False
    session.add(Suppression(recipient_id=recipient_id, address_hash=digest, channel=channel,
                            reason=reason, detail=detail, created_at=utcnow()))
    return True


def active_devices(session: Session, recipient_ids: Sequence[str]) -> dict[str, list[Device]]:
    found: dict[str, list[Device]] = {}
    for chunk in _chunks(recipient_ids):
        for device in session.exec(select(Device).where(col(Device.recipient_id).in_(chunk),
                                                        col(Device.active))).all():
            found.setdefault(device.recipient_id, []).append(device)
    return found


def save_campaign(session: Session, name: str, path: str, spec_hash: str, spec: dict[str, Any]) -> None:
    row = session.get(Campaign, name)
    if row is None:
        session.add(Campaign(name=name, path=path, spec_hash=spec_hash, spec=spec, updated_at=utcnow()))
    elif row.spec_hash != spec_hash or row.path != path:
        row.path, row.spec_hash, row.spec, row.updated_at = path, spec_hash, spec, utcnow()
        session.add(row)


def sent_pairs(session: Session, recipient_ids: Sequence[str], item_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(recipient_id, item_id) pairs among these that were already sent."""
    items = set(item_ids)
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(recipient_ids):
        rows = session.exec(select(Event.recipient_id, Event.item_id).distinct()
                            .where(col(Event.recipient_id).in_(chunk), Event.type == "sent",
                                   col(Event.item_id).is_not(None))).all()
        found.update((r, str(i)) for r, i in rows if i in items)
    return found


def event_times(session: Session, recipient_ids: Sequence[str], types: Sequence[str],
                since: datetime) -> list[tuple[str, datetime]]:
    """(recipient_id, ts) of their events of ``types`` since a time."""
    found: list[tuple[str, datetime]] = []
    for chunk in _chunks(recipient_ids):
        found.extend(session.exec(select(Event.recipient_id, Event.ts).where(
            col(Event.recipient_id).in_(chunk), col(Event.type).in_(types), Event.ts >= since)).all())
    return found


# --- learning: the event log as columns, decisions and models ----------------------------------

EVENT_COLUMN_NAMES = ("recipient_id", "type", "ts", "item_id", "topic", "channel", "campaign", "variant",
                      "position", "propensity", "message_id")


def event_columns(session: Session, *, since: datetime, until: datetime, types: Sequence[str] | None = None,
                  recipient_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Events in [since, until) as columns (see :data:`EVENT_COLUMN_NAMES`), with each item's topic;
    ``ts`` is an array of epoch seconds, the others are lists.

    For everyone, or for the given recipients; optionally only some event types. Read through the
    session's connection, without the ORM's row processing, and with the times as the database
    holds them, converted all at once (a time converted one at a time cost more than the rest of
    the row).
    """
    found: dict[str, Any] = {name: [] for name in EVENT_COLUMN_NAMES}
    connection = session.connection()
    dialect = connection.dialect.name
    query = _event_columns_query(types is not None, recipient_ids is not None, dialect)
    chunks: Iterable[Sequence[str] | None] = [None] if recipient_ids is None else _chunks(recipient_ids)
    for chunk in chunks:
        parameters: dict[str, Any] = {"since": since, "until": until}
        if types is not None:
            parameters["types"] = list(types)
        if chunk is not None:
            parameters["ids"] = list(chunk)
        rows = connection.execute(query, parameters).all()
        if rows:
            for name, values in zip(EVENT_COLUMN_NAMES, zip(*rows, strict=True), strict=True):
                found[name].extend(values)
    found["ts"] = _epoch_seconds(found["ts"], dialect)
    return found


def _epoch_seconds(values: list[Any], dialect: str) -> np.ndarray:
    """The times of :func:`event_columns` as epoch seconds: SQLite holds a UTC time as text
    (``2026-11-02 05:00:00.000000``, which numpy reads to the microsecond), PostgreSQL gives the
    epoch itself; any other database, aware datetimes."""
    if dialect == "sqlite":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy warns where it reads an offset
                return np.asarray(np.array(values, dtype="datetime64[us]").astype(np.int64) / 1e6)
        except (ValueError, UserWarning):  # text in another form than SQLAlchemy writes: one at a time
            return np.fromiter((_aware(datetime.fromisoformat(v)).timestamp() for v in values),
                               dtype=np.float64, count=len(values))
    if dialect == "postgresql":
        return np.asarray(values, dtype=np.float64)
    return np.fromiter((t.timestamp() for t in values), dtype=np.float64, count=len(values))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@functools.cache
def _event_columns_query(by_type: bool, by_recipient: bool, dialect: str) -> sa.Executable:
    """The query of :func:`event_columns`, built once per shape (decisions run it every batch)."""
    ts: Any = col(Event.ts)
    if dialect == "sqlite":
        ts = sa.type_coerce(ts, sa.String)
    elif dialect == "postgresql":
        ts = sa.cast(sa.extract("epoch", ts), sa.Float)
    query = (sa.select(col(Event.recipient_id), col(Event.type), ts, col(Event.item_id),
                       col(ContentItem.topic), col(Event.channel), col(Event.campaign), col(Event.variant),
                       col(Event.position), col(Event.propensity), col(Event.message_id))
             .outerjoin(ContentItem, col(ContentItem.id) == col(Event.item_id))
             .where(col(Event.ts) >= sa.bindparam("since"), col(Event.ts) < sa.bindparam("until")))
    if by_type:
        query = query.where(col(Event.type).in_(sa.bindparam("types", expanding=True)))
    if by_recipient:
        query = query.where(col(Event.recipient_id).in_(sa.bindparam("ids", expanding=True)))
    return query


# The item table's counts (:func:`item_event_counts`), re-read by every sending process as the log grows.
_ITEM_EVENT_COUNTS = (
    sa.select(col(Event.item_id), col(Event.type), sa.func.count(),
              sa.func.sum(sa.case((col(Event.ts) >= sa.bindparam("recent"), 1), else_=0)))
    .where(col(Event.item_id).in_(sa.bindparam("ids", expanding=True)),
           col(Event.type).in_(sa.bindparam("types", expanding=True)),
           col(Event.ts) >= sa.bindparam("since"), col(Event.ts) < sa.bindparam("until"))
    .group_by(col(Event.item_id), col(Event.type)))


def item_event_counts(session: Session, item_ids: Sequence[str], types: Sequence[str], since: datetime,
                      recent: datetime, until: datetime
                      ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """{(item_id, type): count} of events in [since, until) over every recipient, and the same
    counts in [recent, until), read in one scan of the window."""
    counts: dict[tuple[str, str], int] = {}
    recent_counts: dict[tuple[str, str], int] = {}
    for chunk in _chunks(item_ids):
        parameters = {"ids": list(chunk), "types": list(types), "since": since, "recent": recent, "until": until}
        for item_id, kind, count, recent_count in session.execute(_ITEM_EVENT_COUNTS, parameters).all():
            counts[(str(item_id), kind)] = int(count)
            if recent_count:
                recent_counts[(str(item_id), kind)] = int(recent_count)
    return counts, recent_counts


def campaign_responses(session: Session, campaign: str, types: Sequence[str], since: datetime,
                       until: datetime) -> dict[str, list[Any]]:
    """Events of ``types`` in [since, until) that name ``campaign`` or no campaign: recipient_id, ts, type."""
    rows = session.execute(
        sa.select(col(Event.recipient_id), col(Event.ts), col(Event.type))
        .where(col(Event.type).in_(types), col(Event.ts) >= since, col(Event.ts) < until,
               sa.or_(col(Event.campaign).is_(None), col(Event.campaign) == campaign))).all()
    names = ("recipient_id", "ts", "type")
    return {name: list(values) for name, values in zip(names, zip(*rows, strict=True), strict=True)} if rows \
        else {name: [] for name in names}


def first_send_time(session: Session, campaign: str) -> datetime | None:
    """When ``campaign`` first sent anything (the start of a staged send), or None."""
    moment: datetime | None = session.exec(select(sa.func.min(Event.ts))
                                           .where(Event.campaign == campaign, Event.type == "sent")).first()
    return moment


def save_model_version(session: Session, kind: str, campaign: str | None, version: str,
                       metrics: dict[str, Any], artifact: bytes, created_at: datetime) -> int:
    row = ModelVersion(kind=kind, campaign=campaign, version=version, metrics=metrics, artifact=artifact,
                       created_at=created_at, promoted=False)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def promote_model_version(session: Session, model_id: int) -> None:
    """Make ``model_id`` the one in use for its (kind, campaign); the others stay, unpromoted."""
    row = session.get(ModelVersion, model_id)
    assert row is not None
    session.execute(sa.update(ModelVersion)
                    .where(col(ModelVersion.kind) == row.kind, col(ModelVersion.campaign) == row.campaign,
                           col(ModelVersion.id) != model_id)
                    .values(promoted=False))
    row.promoted = True
    session.add(row)


def promoted_model_id(session: Session, kind: str, campaign: str | None) -> int | None:
    """The id of the promoted model of (kind, campaign): cheap enough to ask before every batch."""
    found: int | None = session.exec(select(ModelVersion.id).where(
        ModelVersion.kind == kind, ModelVersion.campaign == campaign, col(ModelVersion.promoted))).first()
    return found


def model_version(session: Session, *, model_id: int | None = None, kind: str | None = None,
                  campaign: str | None = None, version: str | None = None) -> ModelVersion | None:
    """A model by id, or by (kind, campaign, version)."""
    if model_id is not None:
        return session.get(ModelVersion, model_id)
    return session.exec(select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.campaign == campaign,
                                                   ModelVersion.version == version)).first()


def model_versions(session: Session, kind: str, campaign: str | None) -> list[ModelVersion]:
    """Every stored model of (kind, campaign), newest first (artifacts not loaded)."""
    rows = session.exec(select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.campaign == campaign)
                        .order_by(col(ModelVersion.created_at).desc(), col(ModelVersion.id).desc())).all()
    return list(rows)


def stored_secret(session: Session, name: str) -> bytes:
    """The random secret ``name`` kept in the database, made on first use (32 bytes).

    Concurrent first uses agree: the insert skips when another process stored one first, and
    everyone reads back the row that won.
    """
    found = session.get(StoredSecret, name)
    if found is None:
        upsert(session, StoredSecret, [{"name": name, "value": secrets.token_hex(32), "created_at": utcnow()}],
               ["name"])
        found = session.get(StoredSecret, name)
    if found is None:
        raise StoreError(f"keeping the secret {name!r} in the database", "the stored row vanished")
    return bytes.fromhex(found.value)
