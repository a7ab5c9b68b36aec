"""A campaign's messages and the events that answer them, as numpy columns, for reports.

A report over a million messages reads them in one streamed query per table: times come back
as epoch seconds computed by the database, strings as object arrays, and nothing becomes a
Python object per row beyond what the driver hands over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.store.columnar import _epoch_seconds, _partitions
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


@dataclass(frozen=True)
class SendColumns:
    """A campaign's logged sends (the first ``sent`` event of each message), aligned."""

    recipient_id: np.ndarray
    ts: np.ndarray
    variant: np.ndarray


def read_campaign_sends(session: Session, campaign: str, until: datetime) -> SendColumns:
    """One row per message ``campaign`` sent before ``until``, from the event log."""
    ts = _epoch_seconds(session, sa.type_coerce(col(Event.ts), UTCDateTime))
    statement = (sa.select(col(Event.recipient_id), ts, col(Event.variant))
                 .where(col(Event.campaign) == campaign, col(Event.type) == "sent", col(Event.ts) < until,
                        sa.or_(col(Event.position).is_(None), col(Event.position) == 0)))
    recipients, times, variants = _columns(session, statement, 3)
    return SendColumns(_objects(recipients), np.array(times, dtype=float), _objects(variants))


def campaign_runs(session: Session, campaign: str) -> list[Run]:
    """The runs of ``campaign``, oldest first."""
    return list(session.exec(select(Run).where(Run.campaign == campaign).order_by(col(Run.id))).all())
