"""The tables. One sqlmodel class per table; the same definitions run on SQLite and PostgreSQL.

Timestamps are stored in UTC and always come back timezone-aware (:class:`UTCDateTime`); a naive
datetime handed to the store is a bug and is refused. Free-form attributes (recipients, items,
decisions) are JSON columns so imports can carry any column without a migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that refuses naive values, stores UTC and returns aware UTC datetimes."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


def _json(**kwargs: Any) -> Any:
    return Field(sa_type=sa.JSON, **kwargs)


class Recipient(SQLModel, table=True):
    """Someone who can be sent to. ``attributes`` holds every other imported column, typed."""

    id: str = Field(primary_key=True, max_length=200)
    email: str | None = Field(default=None, index=True, max_length=320)
    timezone: str = Field(default="UTC", max_length=64)
    locale: str | None = Field(default=None, max_length=35)
    consent_email: bool = True
    consent_push: bool = False
    attributes: dict[str, Any] = _json(default_factory=dict)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Device(SQLModel, table=True):
    """A push address: an FCM or APNs token, or a Web Push subscription (JSON) for ``webpush``."""

    __table_args__ = (sa.UniqueConstraint("platform", "token", name="uq_device_platform_token"),)

    id: int | None = Field(default=None, primary_key=True)
    recipient_id: str = Field(index=True, max_length=200)
    platform: str = Field(max_length=16)
    token: str = Field(sa_type=sa.Text)
    active: bool = True
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class ContentItem(SQLModel, table=True):
    """An item of a content pool (an article, a product); ``attributes`` are its other columns."""

    __tablename__: ClassVar[str] = "content_item"

    id: str = Field(primary_key=True, max_length=200)
    pool: str = Field(index=True, max_length=100)
    title: str
    url: str
    topic: str | None = Field(default=None, index=True, max_length=100)
    published_at: datetime = _ts(default_factory=utcnow)
    attributes: dict[str, Any] = _json(default_factory=dict)
    updated_at: datetime = _ts(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Something that happened to a recipient. Append-only: rows are inserted, never updated.

    ``sent`` events carry the decision in ``data``: the items per slot with their
    probabilities, the channel and variant with theirs, the model versions and a features hash.
    """

    __table_args__ = (
        sa.Index("ix_event_recipient_ts", "recipient_id", "ts"),
        sa.Index("ix_event_campaign_type", "campaign", "type"),
    )

    id: str = Field(primary_key=True, max_length=200)
    recipient_id: str = Field(max_length=200)
    type: str = Field(max_length=64)
    ts: datetime = _ts()
    item_id: str | None = Field(default=None, max_length=200)
    campaign: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=16)
    variant: str | None = Field(default=None, max_length=100)
    position: int | None = None
    propensity: float | None = None
    value: float | None = None
    run_id: int | None = None
    message_id: int | None = None
    data: dict[str, Any] | None = _json(default=None)


class Campaign(SQLModel, table=True):
    """The last loaded version of a campaign file."""

    name: str = Field(primary_key=True, max_length=100)
    path: str
    spec_hash: str = Field(max_length=64)
    spec: dict[str, Any] = _json(default_factory=dict)
    updated_at: datetime = _ts(default_factory=utcnow)


class RunState:
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"


class Run(SQLModel, table=True):
    """One firing of a campaign: the audience planned at ``started_at`` into Message rows.

    ``key`` names the firing (``cron:<instant>``, ``at:<instant>``, ``event:<event id>``) so
    that it is planned once, whichever process fires it; manual runs have none.
    """

    __table_args__ = (sa.UniqueConstraint("campaign", "key", name="uq_run_campaign_key"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str | None = Field(default=None, max_length=200)
    campaign: str = Field(index=True, max_length=100)
    spec_hash: str = Field(max_length=64)
    state: str = Field(default=RunState.RUNNING, max_length=16)
    trigger: str = Field(default="manual", max_length=200)
    started_at: datetime = _ts(default_factory=utcnow)
    finished_at: datetime | None = _ts(default=None)
    counts: dict[str, Any] = _json(default_factory=dict)


class MessageState:
    """Message states. The first four move forward only; the rest are terminal.

    planned -> claimed -> sending -> sent | failed | suppressed. ``review`` is a message that
    was in flight when a sender died: it may or may not have left, and is reported rather than
    re-sent or dropped. ``holdout``, ``capped`` and ``no_consent`` are audience members who were
    deliberately not sent to; they are kept so reports can measure lift and explain gaps.
    """

    PLANNED = "planned"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    REVIEW = "review"
    HOLDOUT = "holdout"
    CAPPED = "capped"
    NO_CONSENT = "no_consent"

    OPEN = (PLANNED, CLAIMED, SENDING)


class Message(SQLModel, table=True):
    """One recipient of one run. Unique per (run, recipient): a recipient is never planned twice."""

    __table_args__ = (
        sa.UniqueConstraint("run_id", "recipient_id", name="uq_message_run_recipient"),
        sa.Index("ix_message_state_send_at", "state", "send_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    campaign: str = Field(max_length=100)
    recipient_id: str = Field(max_length=200)
    state: str = Field(default=MessageState.PLANNED, max_length=16)
    send_at: datetime = _ts()
    channel: str | None = Field(default=None, max_length=16)
    variant: str | None = Field(default=None, max_length=100)
    decision: dict[str, Any] | None = _json(default=None)
    header_message_id: str | None = Field(default=None, max_length=255)
    attempts: int = 0
    last_error: str | None = None
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_at: datetime | None = _ts(default=None)
    sent_at: datetime | None = _ts(default=None)
    updated_at: datetime = _ts(default_factory=utcnow)


class Suppression(SQLModel, table=True):
    """Never contact this recipient (or this hashed address) on ``channel`` (``all`` = any).

    An erased recipient keeps only ``address_hash`` (SHA-256 of the normalized address), so a
    re-import of the same address stays suppressed without keeping the address itself.
    """

    id: int | None = Field(default=None, primary_key=True)
    recipient_id: str | None = Field(default=None, index=True, max_length=200)
    address_hash: str | None = Field(default=None, index=True, max_length=64)
    channel: str = Field(default="all", max_length=16)
    reason: str = Field(max_length=32)
    detail: str | None = None
    created_at: datetime = _ts(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    """A trained model, stored in the database so every worker on every machine can load it."""

    __tablename__: ClassVar[str] = "model_version"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=32)
    campaign: str | None = Field(default=None, max_length=100)
    version: str = Field(max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    metrics: dict[str, Any] = _json(default_factory=dict)
    artifact: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    promoted: bool = False


class StoredSecret(SQLModel, table=True):
    """A random key Kairos made for itself, kept where every process on the database finds it.

    Used only when the environment provides none (the tracking secret when ``$KAIROS_SECRET``
    is unset), so that ``send``, ``serve`` and every daemon on one database sign and verify alike.
    """

    __tablename__: ClassVar[str] = "stored_secret"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=128)
    created_at: datetime = _ts(default_factory=utcnow)


class ConsentRecord(SQLModel, table=True):
    """One change of a recipient's consent on a channel: granted or withdrawn, by what source, when.

    ``Recipient.consent_email`` / ``consent_push`` hold the current state (what plans and sends
    check); these rows are its history, so "who said yes, where and when" has an answer.
    """

    __tablename__: ClassVar[str] = "consent_record"

    id: int | None = Field(default=None, primary_key=True)
    recipient_id: str = Field(index=True, max_length=200)
    channel: str = Field(max_length=16)
    granted: bool
    source: str = Field(max_length=200)
    at: datetime = _ts()
    recorded_at: datetime = _ts(default_factory=utcnow)


class SegmentBuild(SQLModel, table=True):
    """One build of the persona segments; ``version`` grows by one per build."""

    __tablename__: ClassVar[str] = "segment_build"

    version: int | None = Field(default=None, primary_key=True)
    built_at: datetime = _ts(default_factory=utcnow)
    method: str = Field(max_length=32)
    k: int
    silhouette: float | None = None
    recipients: int
    min_size: int
    features: list[str] = _json(default_factory=list)


class Segment(SQLModel, table=True):
    """A persona of one build: its name, size and what distinguishes it (z-scores per feature)."""

    __table_args__ = (sa.UniqueConstraint("version", "name", name="uq_segment_version_name"),)

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(index=True)
    name: str = Field(max_length=100)
    size: int
    profile: dict[str, Any] = _json(default_factory=dict)


class SegmentMember(SQLModel, table=True):
    """Which persona a recipient was in, per build (memberships are versioned, never updated)."""

    __tablename__: ClassVar[str] = "segment_member"
    __table_args__ = (sa.Index("ix_segment_member_version_segment", "version", "segment"),)

    version: int = Field(primary_key=True)
    recipient_id: str = Field(primary_key=True, max_length=200)
    segment: str = Field(max_length=100)


# Behavioural aggregates (clicks in the last N days, the latest click, clicks per topic) read
# events by type and time and group them by recipient: this index answers them without touching
# the table, on SQLite and PostgreSQL alike. Its (type, ts) prefix serves every query by type and
# time, so no separate (type, ts) index slows the inserts.
sa.Index("ix_event_type_ts_recipient_item", Event.__table__.c.type, Event.__table__.c.ts,  # type: ignore[attr-defined]
         Event.__table__.c.recipient_id, Event.__table__.c.item_id)  # type: ignore[attr-defined]
