"""Columnar reads for rules over every recipient: fields, attributes and event aggregates.

An audience over a million recipients cannot afford a Python object per recipient per question.
These reads return plain lists and numpy arrays: one streamed query for the recipient columns a
rule names (attributes are extracted by the database, not by parsing every JSON document in
Python), and one grouped query per behavioural function, aggregated by the database and mapped
onto the recipients by position.

Recipients come back in id order by code point (``COLLATE "C"`` on PostgreSQL, SQLite's binary
order), the same on both databases.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session, col

from engine.store.db import loads
from engine.store.queries import RecipientRow
from engine.store.tables import (
    ContentItem,
    Device,
    Event,
    Recipient,
    Segment,
    SegmentBuild,
    SegmentMember,
    Suppression,
)

PARTITION = 10_000  # rows per fetch: a partition of Python tuples is what a streamed read holds at once
RECIPIENT_FIELDS = ("id", "email", "timezone", "locale", "consent_email", "consent_push")
_BOOLEAN_FIELDS = ("consent_email", "consent_push")  # SQLite hands these back as 0 and 1


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _by_id(session: Session, column: Any = Recipient.id) -> Any:
    """``column`` (a recipient id) ordered by code point on both databases."""
    if _dialect(session) == "postgresql":
        return col(column).collate("C")
    return col(column)


def _attribute_json(session: Session, name: str) -> sa.ColumnElement[Any]:
    """The attribute ``name`` as JSON text (decoded in bulk by :func:`_decode`, keeping its type)."""
    if _dialect(session) == "sqlite":
        # json_extract would turn true into 1; the -> operator keeps the JSON text
        return sa.type_coerce(col(Recipient.attributes).op("->")(f'$."{name}"'), sa.Text)
    return sa.cast(col(Recipient.attributes)[name], sa.Text)


def _decode(texts: Sequence[str | None]) -> list[Any]:
    """JSON texts (None for missing) to values, with one parse for the whole batch."""
    return list(loads("[" + ",".join("null" if t is None else t for t in texts) + "]"))


def _partitions(session: Session, statement: Any, *, typed: bool = False,
                size: int = PARTITION) -> Iterator[list[tuple[Any, ...]]]:
    """Column tuples of the result, ``size`` rows at a time.

    Not a server-side cursor: PostgreSQL plans cursors for their first rows and without parallel
    workers, which makes these whole-table aggregates several times slower. Unless ``typed``,
    rows come straight from the driver's cursor, skipping SQLAlchemy's per-row processing: the
    columns read this way are text and numbers, which need none.
    """
    result = session.connection().execute(statement)
    try:
        if typed:
            for partition in result.partitions(size):
                yield list(zip(*partition, strict=True))
            return
        cursor = result.cursor
        while rows := cursor.fetchmany(size):
            yield list(zip(*rows, strict=True))
    finally:
        result.close()


def _rows(session: Session, statement: Any) -> Iterator[Sequence[Any]]:
    for columns in _partitions(session, statement, typed=True):
        yield from zip(*columns, strict=True)


@dataclass(frozen=True)
class RecipientColumnsRead:
    """Recipient ids (in id order) and the requested columns, aligned with them."""

    ids: RecipientIds
    columns: dict[str, list[Any]]


#: A Python string costs some 57 bytes besides its characters (header, hash, the list's pointer
#: to it); packed into a fixed-width byte array an id costs the width. Up to this width packing
#: is never the larger.
PACKED_ID_WIDTH = 56


class RecipientIds(Sequence[str]):
    """Every recipient's id, in code point order, as compactly as the ids allow.

    Ids of at most :data:`PACKED_ID_WIDTH` UTF-8 bytes (nearly always: ``r0001234``, a UUID) are
    packed into one numpy byte-string array: 8 bytes for an 8-character id where a list of
    strings takes 65, so the ids of a large audience take a few megabytes rather than tens.
    UTF-8 byte order is code point order, so the array stays sorted and positions are found by
    vectorized bisection. Longer ids (or one ending in NUL, which a byte-string array would
    drop) keep the list of strings.
    """

    __slots__ = ("_packed", "_strings")

    def __init__(self, packed: np.ndarray | None = None, strings: list[str] | None = None) -> None:
        self._packed = packed  # one of the two; the other is None, or empty
        self._strings = strings if packed is None and strings is not None else []

    @classmethod
    def of(cls, parts: Iterable[Sequence[str]]) -> RecipientIds:
        """The ids of ``parts``, in order."""
        packer = IdPacker()
        for part in parts:
            packer.add(part)
        return packer.ids()

    def __len__(self) -> int:
        return len(self._packed) if self._packed is not None else len(self._strings)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if self._packed is None:
            return self._strings[index]
        if isinstance(index, slice):
            return [value.decode() for value in self._packed[index]]
        return str(self._packed[index].decode())

    def __iter__(self) -> Iterator[str]:
        if self._packed is None:
            return iter(self._strings)
        return (value.decode() for value in self._packed)

    def take(self, positions: np.ndarray) -> list[str]:
        """The ids at ``positions``."""
        if self._packed is None:
            return [self._strings[i] for i in positions]
        return [value.decode() for value in self._packed[positions]]

    def increasing(self) -> bool:
        """Whether every id is greater than the one before (sorted and unique)."""
        if self._packed is not None:
            return bool(np.all(self._packed[1:] > self._packed[:-1]))
        return all(a < b for a, b in itertools.pairwise(self._strings))

    def positions(self, recipient_ids: Sequence[str]) -> np.ndarray:
        """Position of each of ``recipient_ids``, -1 for ids that are not here."""
        if self._packed is None:
            strings, size = self._strings, len(self)

            def position(recipient_id: str) -> int:
                at = bisect_left(strings, recipient_id)
                return at if at < size and strings[at] == recipient_id else -1

            return np.fromiter(map(position, recipient_ids), dtype=np.int64, count=len(recipient_ids))
        packed = self._packed
        encoded = [value.encode() for value in recipient_ids]
        # An id wider than the array would be cut short (and might then match another).
        fits = np.fromiter((_packs(e, packed.dtype.itemsize) for e in encoded), dtype=bool, count=len(encoded))
        wanted = np.array(encoded, dtype=packed.dtype)
        at = np.searchsorted(packed, wanted)
        inside = fits & (at < len(packed))
        inside[inside] = packed[at[inside]] == wanted[inside]
        return np.where(inside, at, -1).astype(np.int64)


class IdPacker:
    """Builds :class:`RecipientIds` a part at a time (a streamed read's partitions), packing each
    part as it comes, so the strings of only one part exist at once."""

    def __init__(self) -> None:
        self._packed: list[np.ndarray] = []
        self._strings: list[str] | None = None

    def add(self, part: Sequence[str]) -> None:
        if self._strings is None:
            encoded = [value.encode() for value in part]
            if all(_packs(e, PACKED_ID_WIDTH) for e in encoded):
                self._packed.append(np.array(encoded, dtype=bytes))
                return
            self._strings = [value.decode() for array in self._packed for value in array]
            self._packed = []
        self._strings.extend(part)

    def ids(self) -> RecipientIds:
        if self._strings is not None:
            return RecipientIds(strings=self._strings)
        return RecipientIds(packed=np.concatenate([np.array([], dtype=bytes), *self._packed]))


def _packs(encoded: bytes, width: int) -> bool:
    """Whether an id's UTF-8 bytes survive a byte-string array of ``width``: numpy drops trailing NULs."""
    return len(encoded) <= width and not encoded.endswith(b"\0")


def read_recipient_columns(session: Session, fields: Sequence[str] = (),
                           attributes: Sequence[str] = ()) -> RecipientColumnsRead:
    """Every recipient's id, with ``fields`` (columns of the table) and ``attributes`` (by name).

    Attribute names are identifiers checked by the rule parser; they are bound as JSON paths,
    never pasted into SQL.
    """
    expressions: list[Any] = [col(getattr(Recipient, name)) for name in fields]
    expressions += [_attribute_json(session, name) for name in attributes]
    ids = IdPacker()
    columns: dict[str, list[Any]] = {name: [] for name in fields}
    columns.update({f"attributes.{name}": [] for name in attributes})
    lists = list(columns.values())
    decoded = [False] * len(fields) + [True] * len(attributes)
    booleans = [name in _BOOLEAN_FIELDS for name in fields] + [False] * len(attributes)
    for partition in _partitions(session, sa.select(col(Recipient.id), *expressions).order_by(_by_id(session))):
        ids.add(partition[0])
        for target, values, is_json, is_bool in zip(lists, partition[1:], decoded, booleans, strict=True):
            target.extend(_decode(values) if is_json else [bool(v) for v in values] if is_bool else values)
    return RecipientColumnsRead(ids.ids(), columns)


_NO_ATTRIBUTES: dict[str, Any] = {}  # shared by the rows read without attributes; never written to


def read_recipient_rows(session: Session, keep: Callable[[str], bool], *, attributes: bool = True,
                        first: str | None = None, last: str | None = None) -> list[RecipientRow]:
    """The full rows of the recipients whose id ``keep`` accepts, in id order (one streamed scan;
    only the kept rows' attributes are decoded), with whether each has an active push device.

    :param attributes: False leaves every row's ``attributes`` empty, for callers that need only
        addresses, zones and consent (planning a large audience: the decoded attributes would be
        most of its memory).
    :param first: read only ids from ``first`` on (in id order), and :param last: up to ``last``
        included: one chunk of an audience, read through the primary key.
    """
    columns = [col(getattr(Recipient, name)) for name in RECIPIENT_FIELDS]
    raw = sa.cast(col(Recipient.attributes), sa.Text) if attributes else sa.literal(None)
    by_id = _by_id(session)
    statement = sa.select(*columns, raw).order_by(by_id)
    owner = _by_id(session, Device.recipient_id)
    devices = sa.select(col(Device.recipient_id)).where(col(Device.active)).distinct()
    if first is not None:
        statement = statement.where(by_id >= first)
        devices = devices.where(owner >= first)
    if last is not None:
        statement = statement.where(by_id <= last)
        devices = devices.where(owner <= last)
    with_device = set(session.execute(devices).scalars())
    found: list[RecipientRow] = []
    # one string per distinct zone and locale, not one per row
    zones: dict[str, str] = {}
    locales: dict[str | None, str | None] = {}
    for partition in _partitions(session, statement):
        for recipient_id, email, timezone, locale, consent_email, consent_push, stored in zip(*partition,
                                                                                              strict=True):
            if keep(recipient_id):
                found.append(RecipientRow(recipient_id, email, zones.setdefault(timezone, timezone),
                                          locales.setdefault(locale, locale), bool(consent_email),
                                          bool(consent_push), loads(stored) if stored else _NO_ATTRIBUTES,
                                          recipient_id in with_device))
    return found


@dataclass(frozen=True)
class Aggregate:
    """One value per recipient who has any (everyone else has none)."""

    recipient_ids: list[str]
    values: np.ndarray


def _aggregate(session: Session, statement: Any) -> Aggregate:
    ids: list[str] = []
    values: list[Any] = []
    for partition in _partitions(session, statement):
        ids.extend(partition[0])
        values.extend(partition[1])
    return Aggregate(ids, np.array(values, dtype=float))


def _epoch_seconds(session: Session, moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A stored time as seconds since the epoch, computed by the database (UTC on both)."""
    if _dialect(session) == "sqlite":
        return (sa.func.julianday(moment) - 2440587.5) * 86400.0
    return sa.extract("epoch", moment)


# Grouping by an expression rather than the bare column keeps SQLite from walking the whole
# (recipient, time) index to get groups in order; it reads the covering (type, time, ...) index
# for just the events asked about and sorts those instead.
_GROUPED_RECIPIENT = sa.func.coalesce(col(Event.recipient_id), "").label("recipient_id")


def event_counts(session: Session, kind: str, since: datetime) -> Aggregate:
    """Per recipient, how many events of ``kind`` since a time.

    ``sent`` counts messages, not the per-slot impressions of one message (see
    :func:`engine.store.queries.recipient_event_counts`).
    """
    if kind == "sent":
        imported = sa.func.coalesce(col(Event.campaign), "") + "@" + sa.cast(col(Event.ts), sa.String)
        counted: sa.ColumnElement[Any] = sa.func.count(sa.distinct(
            sa.func.coalesce(sa.cast(col(Event.message_id), sa.String), imported)))
    else:
        counted = sa.func.count()
    return _aggregate(session, sa.select(_GROUPED_RECIPIENT, counted)
                      .where(col(Event.type) == kind, col(Event.ts) >= since).group_by(_GROUPED_RECIPIENT))


def last_event_seconds(session: Session, kind: str) -> Aggregate:
    """Per recipient, the time (seconds since the epoch) of their latest event of ``kind``."""
    return _aggregate(session, sa.select(_GROUPED_RECIPIENT, _epoch_seconds(session, sa.func.max(col(Event.ts))))
                      .where(col(Event.type) == kind).group_by(_GROUPED_RECIPIENT))


@dataclass(frozen=True)
class TopicCounts:
    """Per (recipient, topic, event type) counts of events on items that have a topic."""

    recipient_ids: list[str]
    topics: list[str]
    kinds: list[str]
    counts: np.ndarray


def topic_counts(session: Session, kinds: Sequence[str], since: datetime, topic: str | None = None) -> TopicCounts:
    """Events of ``kinds`` since a time on items with a topic (or one topic), grouped by recipient."""
    items = sa.select(col(ContentItem.id)).where(col(ContentItem.topic).is_not(None))
    if topic is not None:
        items = items.where(col(ContentItem.topic) == topic)
    statement = (sa.select(col(Event.recipient_id), col(ContentItem.topic), col(Event.type), sa.func.count())
                 .join(ContentItem, col(ContentItem.id) == col(Event.item_id))
                 .where(col(Event.type).in_(list(kinds)), col(Event.ts) >= since,
                        col(Event.item_id).in_(items.scalar_subquery()))
                 .group_by(col(Event.recipient_id), col(ContentItem.topic), col(Event.type)))
    ids: list[str] = []
    topics: list[str] = []
    types: list[str] = []
    counts: list[int] = []
    targets: tuple[list[Any], ...] = (ids, topics, types, counts)
    for partition in _partitions(session, statement):
        for target, values in zip(targets, partition, strict=True):
            target.extend(values)
    return TopicCounts(ids, topics, types, np.array(counts, dtype=float))


def has_item_events(session: Session, kind: str) -> bool:
    """Whether any event of ``kind`` names an item (clicks do; opens usually do not)."""
    return session.execute(sa.select(col(Event.id)).where(col(Event.type) == kind, col(Event.item_id).is_not(None))
                           .limit(1)).first() is not None


def latest_segment_version(session: Session) -> int | None:
    return session.execute(sa.select(sa.func.max(col(SegmentBuild.version)))).scalar()


def segment_members(session: Session, version: int, segment: str | None = None) -> Aggregate:
    """Recipient ids of a segment (or of every segment, with a placeholder value) in one build."""
    statement = sa.select(col(SegmentMember.recipient_id), sa.literal(1.0)).where(col(SegmentMember.version) == version)
    if segment is not None:
        statement = statement.where(col(SegmentMember.segment) == segment)
    return _aggregate(session, statement)


def segment_names(session: Session, version: int) -> list[str]:
    return list(session.execute(sa.select(col(Segment.name)).where(col(Segment.version) == version)
                                .order_by(col(Segment.name))).scalars())


def segment_labels(session: Session, version: int) -> tuple[list[str], list[str]]:
    """(recipient ids, segment names) of one build."""
    ids: list[str] = []
    names: list[str] = []
    statement = sa.select(col(SegmentMember.recipient_id), col(SegmentMember.segment)).where(
        col(SegmentMember.version) == version)
    for recipient_id, name in _rows(session, statement):
        ids.append(recipient_id)
        names.append(name)
    return ids, names


@dataclass(frozen=True)
class SuppressionSets:
    """Every suppression that applies to some channels: by recipient id and by hashed address."""

    recipient_ids: frozenset[str]
    address_hashes: frozenset[str]


def suppression_sets(session: Session, channels: Sequence[str]) -> SuppressionSets:
    rows = session.execute(sa.select(col(Suppression.recipient_id), col(Suppression.address_hash))
                           .where(col(Suppression.channel).in_(["all", *channels]))).all()
    return SuppressionSets(frozenset(r for r, _ in rows if r is not None),
                           frozenset(h for _, h in rows if h is not None))


@dataclass(frozen=True)
class VariantCounts:
    """Per (recipient, variant) counts of a campaign's messages (or goal events)."""

    recipient_ids: list[str]
    variants: list[str]
    counts: np.ndarray


def campaign_variant_counts(session: Session, campaign: str, kind: str) -> VariantCounts:
    """How many distinct messages of ``campaign`` each recipient got per variant (``kind`` = ``sent``),
    or on how many of them they reached a goal event of ``kind``."""
    per_message = sa.func.count(sa.distinct(sa.func.coalesce(sa.cast(col(Event.message_id), sa.String),
                                                             col(Event.id))))
    statement = (sa.select(col(Event.recipient_id), col(Event.variant), per_message)
                 .where(col(Event.campaign) == campaign, col(Event.type) == kind, col(Event.variant).is_not(None))
                 .group_by(col(Event.recipient_id), col(Event.variant)))
    ids: list[str] = []
    variants: list[str] = []
    counts: list[int] = []
    for recipient_id, variant, count in _rows(session, statement):
        ids.append(recipient_id)
        variants.append(variant)
        counts.append(count)
    return VariantCounts(ids, variants, np.array(counts, dtype=float))
