"""A campaign's messages and the events that answer them, as numpy columns, for reports and the bandit.

A report over a million messages reads them in one streamed query per table: times come back
as epoch seconds computed by the database, strings as object arrays, and nothing becomes a
Python object per row beyond what the driver hands over.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.store.columnar import PARTITION, _by_id, _epoch_seconds, _partitions
from engine.store.tables import Event, Message, Run, UTCDateTime


@dataclass(frozen=True)
class MessageColumns:
    """Every message of a campaign, aligned: ``at`` is when it went out (``sent_at``), or for a
    message that did not go out, when it was planned to (``send_at``), in epoch seconds."""

    id: np.ndarray
    run_id: np.ndarray
    recipient_id: np.ndarray
    state: np.ndarray
    at: np.ndarray
    channel: np.ndarray
    variant: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def select(self, keep: np.ndarray) -> MessageColumns:
        return MessageColumns(*(getattr(self, name)[keep] for name in _MESSAGE_NAMES))


_MESSAGE_NAMES = ("id", "run_id", "recipient_id", "state", "at", "channel", "variant")


def _columns(session: Session, statement: Any, width: int) -> list[list[Any]]:
    gathered: list[list[Any]] = [[] for _ in range(width)]
    for partition in _partitions(session, statement):
        for target, values in zip(gathered, partition, strict=True):
            target.extend(values)
    return gathered


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def read_campaign_messages(session: Session, campaign: str) -> MessageColumns:
    """Every message of every run of ``campaign``, in id order."""
    at = _epoch_seconds(session, sa.func.coalesce(col(Message.sent_at), col(Message.send_at)))
    statement = (sa.select(col(Message.id), col(Message.run_id), col(Message.recipient_id), col(Message.state), at,
                           col(Message.channel), col(Message.variant))
                 .where(col(Message.campaign) == campaign).order_by(col(Message.id)))
    ids, runs, recipients, states, times, channels, variants = _columns(session, statement, 7)
    return MessageColumns(np.array(ids, dtype=np.int64), np.array(runs, dtype=np.int64), _objects(recipients),
                          _objects(states), np.array(times, dtype=float), _objects(channels), _objects(variants))


@dataclass(frozen=True)
class ResponseColumns:
    """Events answering a campaign, aligned; ``message_id`` is -1 where the event names none."""

    recipient_id: np.ndarray
    type: np.ndarray
    ts: np.ndarray
    message_id: np.ndarray


def read_campaign_responses(session: Session, campaign: str, types: Sequence[str], since: datetime,
                            until: datetime) -> ResponseColumns:
    """Events of ``types`` in [since, until] that name ``campaign`` or no campaign."""
    ts = _epoch_seconds(session, sa.type_coerce(col(Event.ts), UTCDateTime))
    statement = (sa.select(col(Event.recipient_id), col(Event.type), ts,
                           sa.func.coalesce(col(Event.message_id), -1))
                 .where(col(Event.type).in_(list(types)), col(Event.ts) >= since, col(Event.ts) <= until,
                        sa.or_(col(Event.campaign).is_(None), col(Event.campaign) == campaign)))
    recipients, kinds, times, messages = _columns(session, statement, 4)
    return ResponseColumns(_objects(recipients), _objects(kinds), np.array(times, dtype=float),
                           np.array(messages, dtype=np.int64))


def campaign_runs(session: Session, campaign: str) -> list[Run]:
    """The runs of ``campaign``, oldest first."""
    return list(session.exec(select(Run).where(Run.campaign == campaign).order_by(col(Run.id))).all())


@dataclass(frozen=True)
class OutcomeLog:
    """Logged sends of a campaign and the events that may answer them, as numbers only: each
    recipient is a code (0, 1, ... in the order the log was read), each variant and event type
    an index into the names asked for (-1 for others)."""

    send_recipient: np.ndarray
    send_ts: np.ndarray
    send_variant: np.ndarray
    response_recipient: np.ndarray
    response_type: np.ndarray
    response_ts: np.ndarray
    recipients: list[str] | None  # each code's recipient id, when asked for


def outcome_log_chunks(session: Session, campaign: str, variants: Sequence[str], types: Sequence[str],
                       until: datetime, *, with_recipients: bool = False,
                       size: int = PARTITION) -> Iterator[OutcomeLog]:
    """The first ``sent`` event of each message ``campaign`` sent before ``until``, and the events
    of ``types`` from the first of them to ``until`` that name ``campaign`` or no campaign, in
    chunks of about ``size`` rows that each hold *whole recipients*: everything that can credit
    an answer to a send is in one chunk, so attribution runs chunk by chunk.

    One query, ordered by recipient and read ``size`` rows at a time; codes count from 0 in each
    chunk. Memory holds one chunk of numbers, never the whole log: the bandit re-reads this every
    few seconds in every sending process, over every send of the campaign.
    """
    ts = _epoch_seconds(session, sa.type_coerce(col(Event.ts), UTCDateTime))
    is_send = (col(Event.campaign) == campaign, col(Event.type) == "sent",
               sa.or_(col(Event.position).is_(None), col(Event.position) == 0))
    first = session.connection().execute(sa.select(sa.func.min(col(Event.ts))).where(*is_send)).scalar()
    if first is None:
        return
    kind = sa.case(*((col(Event.type) == name, index) for index, name in enumerate(types)), else_=-1)
    sends = sa.select(col(Event.recipient_id).label("recipient"), ts.label("ts"), sa.literal(-2).label("kind"),
                      col(Event.variant).label("variant")).where(*is_send, col(Event.ts) < until,
                                                                  col(Event.recipient_id).is_not(None))
    answers = sa.select(col(Event.recipient_id).label("recipient"), ts.label("ts"), kind.label("kind"),
                        sa.null().label("variant")).where(
        col(Event.type).in_(list(types)), col(Event.ts) >= first, col(Event.ts) <= until,
        col(Event.recipient_id).is_not(None), sa.or_(col(Event.campaign).is_(None), col(Event.campaign) == campaign))
    log = sa.union_all(sends, answers).subquery()
    # Any order keeps a recipient's rows together; code point order is the cheapest to sort by.
    statement = (sa.select(log.c.recipient, log.c.ts, log.c.kind, log.c.variant)
                 .order_by(_by_id(session, log.c.recipient)))
    variant_index = {name: index for index, name in enumerate(variants)}
    names: list[str] = []  # the ids of the codes not yet handed out, when asked for
    held: list[np.ndarray] | None = None  # the rows of the last recipient read, who may go on
    code, previous = -1, None
    for people, moments, kinds, arms in _partitions(session, statement, size=size):
        who = []
        for recipient in people:  # rows of one recipient are adjacent: a new code at each change
            if recipient != previous:
                code, previous = code + 1, recipient
                if with_recipients:
                    names.append(recipient)
            who.append(code)
        rows = [np.array(who, dtype=np.int64), np.array(moments, dtype=float), np.array(kinds, dtype=np.int64),
                np.array([variant_index.get(a, -1) for a in arms], dtype=np.int64)]
        if held is not None:
            rows = [np.concatenate(pair) for pair in zip(held, rows, strict=True)]
        last = int(np.searchsorted(rows[0], rows[0][-1]))  # where the last recipient's rows start
        held = [column[last:] for column in rows]
        if last:
            yield _outcome_chunk([column[:last] for column in rows], names if with_recipients else None)
    if held is not None:
        yield _outcome_chunk(held, names if with_recipients else None)


def _outcome_chunk(rows: list[np.ndarray], names: list[str] | None) -> OutcomeLog:
    """One chunk of whole recipients, its codes counted from 0; hands their ids over from ``names``."""
    codes, times, kinds, arm = rows
    base = int(codes[0])
    codes = codes - base
    recipients = None
    if names is not None:
        count = int(codes[-1]) + 1
        recipients = names[:count]
        del names[:count]
    sent = kinds == -2
    return OutcomeLog(codes[sent], times[sent], arm[sent], codes[~sent], kinds[~sent], times[~sent], recipients)
