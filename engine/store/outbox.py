"""Runs and the message outbox: the state transitions that make sends exactly-once.

A message moves planned -> claimed -> sending -> sent | failed | suppressed, and every move is
committed by the caller before the next step touches the network (DESIGN.md, "Messages are
never lost or sent twice"). Claiming uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any
number of workers can pump the same outbox; on SQLite the database's write lock serializes it.

The rule for a sender that died (see :func:`recover_run`): a ``claimed`` message had not been
handed to any transport, so it goes back to ``planned``; a ``sending`` message may or may not
have left, so it becomes ``review`` and is reported, never silently re-sent or dropped. Since a
batch is committed as ``sending`` only just before its network calls and its results are
committed right after them, at most the batch in flight (``[sending] batch_size`` messages per
sender) can be in that state.

A run whose transport failed too many times in a row is *paused* (:func:`pause_run`): its
untried messages stay ``planned`` and the next ``kairos send`` resumes it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.store.db import execute_many, upsert
from engine.store.tables import Device, Event, Message, MessageState, Run, RunState


def unfinished_run(session: Session, campaign: str) -> Run | None:
    """The latest run of ``campaign`` that still has messages to send, if any."""
    return session.exec(select(Run).where(Run.campaign == campaign, col(Run.state) != RunState.FINISHED)
                        .order_by(col(Run.id).desc())).first()


def start_run(session: Session, campaign: str, spec_hash: str, trigger: str, now: datetime,
              key: str | None = None) -> Run:
    run = Run(campaign=campaign, spec_hash=spec_hash, trigger=trigger, started_at=now, state=RunState.RUNNING,
              key=key)
    session.add(run)
    session.flush()
    return run


def run_with_key(session: Session, campaign: str, key: str) -> Run | None:
    """The run of ``campaign`` planned for the firing ``key`` (a cron instant, an event id)."""
    return session.exec(select(Run).where(Run.campaign == campaign, Run.key == key)).first()


def insert_messages(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert planned (and deliberately skipped) messages; unique per (run, recipient)."""
    upsert(session, Message, rows, ["run_id", "recipient_id"])


@dataclass(frozen=True)
class Recovery:
    released: int
    review: list[int]


def recover_run(session: Session, run_id: int, now: datetime) -> Recovery:
    """Resolve what a dead sender left behind (rule in the module docstring)."""
    released = session.execute(
        sa.update(Message).where(col(Message.run_id) == run_id, col(Message.state) == MessageState.CLAIMED)
        .values(state=MessageState.PLANNED, claimed_by=None, claimed_at=None, updated_at=now))
    review = list(session.exec(select(Message.id).where(Message.run_id == run_id,
                                                        Message.state == MessageState.SENDING)).all())
    if review:
        session.execute(sa.update(Message).where(col(Message.id).in_(review))
                        .values(state=MessageState.REVIEW, updated_at=now,
                                last_error="in flight when the sender stopped; may or may not have been delivered"))
    return Recovery(released=int(released.rowcount or 0),  # type: ignore[attr-defined]
                    review=[int(i) for i in review if i is not None])


class ClaimedMessage(NamedTuple):
    """A message claimed for sending: the columns the pump reads, as plain values (loading ORM
    objects cost more than the claim's own SQL; a named tuple costs less than a frozen dataclass)."""

    id: int
    run_id: int
    campaign: str
    recipient_id: str
    send_at: datetime
    attempts: int
    decision: dict[str, Any] | None
    header_message_id: str | None
    channel: str | None
    variant: str | None


_CLAIMED_COLUMNS = [Message.__table__.c[name] for name in ClaimedMessage._fields]  # type: ignore[attr-defined]


def claim_due_messages(session: Session, now: datetime, limit: int, worker: str,
                       run_id: int | None = None, campaign: str | None = None) -> list[ClaimedMessage]:
    """Claim up to ``limit`` planned messages whose send_at has come, oldest first (of one run,
    or of one campaign's runs)."""
    due = (select(Message.id).where(Message.state == MessageState.PLANNED, Message.send_at <= now)
           .order_by(col(Message.send_at), col(Message.id)).limit(limit))
    if run_id is not None:
        due = due.where(Message.run_id == run_id)
    if campaign is not None:
        due = due.where(Message.campaign == campaign)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    table = Message.__table__  # type: ignore[attr-defined]
    rows = session.connection().execute(
        sa.update(table).where(table.c.id.in_(due.scalar_subquery()))
        .values(state=MessageState.CLAIMED, claimed_by=worker, claimed_at=now, updated_at=now)
        .returning(*_CLAIMED_COLUMNS)).all()
    return sorted((ClaimedMessage(*row) for row in rows), key=lambda m: (m.send_at, m.id))


def due_count(session: Session, now: datetime, cap: int) -> int:
    """How many planned messages are due at ``now``, of any run, counted up to ``cap``: read
    from the (state, send_at) index alone, so it costs at most ``cap`` index entries."""
    due = (select(Message.id).where(Message.state == MessageState.PLANNED, Message.send_at <= now)
           .limit(cap).subquery())
    return int(session.exec(select(sa.func.count()).select_from(due)).one())


def update_messages(session: Session, changes: Sequence[dict[str, Any]]) -> None:
    """Bulk update messages by primary key: each dict holds ``id`` and the columns to set.

    Messages given the same values (a batch's ``sent``, say) take one ``UPDATE ... WHERE id IN``
    per chunk; the others one Core UPDATE per set of columns, executed for all its rows at once
    (executemany). Either costs less per row than the ORM's bulk path.
    """
    alike: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in changes:
        columns = tuple(sorted(name for name in change if name != "id"))
        values = tuple((name, change[name]) for name in columns)
        try:
            alike.setdefault(values, []).append(change["id"])
        except TypeError:  # a JSON value (a decision): this message's own row
            groups.setdefault(columns, []).append({"key_id": change["id"],
                                                   **{f"set_{name}": change[name] for name in columns}})
    for values, ids in alike.items():
        if len(ids) == 1:
            groups.setdefault(tuple(name for name, _ in values), []).append(
                {"key_id": ids[0], **{f"set_{name}": value for name, value in values}})
            continue
        statement = _update_alike_statement(tuple(name for name, _ in values))
        parameters = {f"set_{name}": value for name, value in values}
        for start in range(0, len(ids), 900):
            session.execute(statement, {"ids": ids[start:start + 900], **parameters})
    for columns, rows in groups.items():
        execute_many(session, _update_statement(columns), rows)


@functools.cache
def _update_alike_statement(columns: tuple[str, ...]) -> sa.Update:
    """``UPDATE message SET <columns> WHERE id IN :ids``, built once per set of columns."""
    table = Message.__table__  # type: ignore[attr-defined]
    return (sa.update(table).where(table.c.id.in_(sa.bindparam("ids", expanding=True)))
            .values({name: sa.bindparam(f"set_{name}") for name in columns}))


@functools.cache
def _update_statement(columns: tuple[str, ...]) -> sa.Update:
    """``UPDATE message SET <columns> WHERE id = :key_id``, built once per set of columns."""
    table = Message.__table__  # type: ignore[attr-defined]
    return (sa.update(table).where(table.c.id == sa.bindparam("key_id"))
            .values({name: sa.bindparam(f"set_{name}") for name in columns}))


def record_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    """Append events; an event whose id is already stored is skipped (idempotent)."""
    upsert(session, Event, events, ["id"])


def state_counts(session: Session, run_id: int) -> dict[str, int]:
    rows = session.exec(select(Message.state, sa.func.count()).where(Message.run_id == run_id)
                        .group_by(col(Message.state))).all()
    return {state: int(count) for state, count in rows}


def next_send_at(session: Session, run_id: int) -> datetime | None:
    """When the next planned message of the run is due."""
    return session.exec(select(sa.func.min(Message.send_at)).where(
        Message.run_id == run_id, Message.state == MessageState.PLANNED)).first()


def finish_run_if_done(session: Session, run_id: int, now: datetime) -> bool:
    """Mark the run finished when no message of it is planned, claimed or sending."""
    counts = state_counts(session, run_id)
    if any(counts.get(state, 0) for state in MessageState.OPEN):
        return False
    run = session.get(Run, run_id)
    if run is not None and run.state != RunState.FINISHED:
        run.state, run.finished_at, run.counts = RunState.FINISHED, now, counts
        session.add(run)
    return True


def run_messages(session: Session, run_id: int) -> list[Message]:
    return list(session.exec(select(Message).where(Message.run_id == run_id)
                             .order_by(col(Message.recipient_id))).all())


def next_retry_at(session: Session, run_id: int) -> datetime | None:
    """When the next message of the run waiting to retry a temporary failure comes due."""
    return session.exec(select(sa.func.min(Message.send_at)).where(
        Message.run_id == run_id, Message.state == MessageState.PLANNED, col(Message.attempts) > 0)).first()


@dataclass(frozen=True)
class MessageRef:
    """What tracking needs to know of a message to attribute an event to it."""

    id: int
    run_id: int
    campaign: str
    recipient_id: str
    channel: str | None
    variant: str | None


_MESSAGE_REFS = (sa.select(col(Message.id), col(Message.run_id), col(Message.campaign), col(Message.recipient_id),
                           col(Message.channel), col(Message.variant))
                 .where(col(Message.id).in_(sa.bindparam("ids", expanding=True))))


def message_refs(session: Session, ids: Sequence[int]) -> dict[int, MessageRef]:
    """{message id: reference} for the stored ones among ``ids`` (one query per 900)."""
    found: dict[int, MessageRef] = {}
    connection = session.connection()  # a plain Core query: no ORM statement processing
    for start in range(0, len(ids), 900):
        rows = connection.execute(_MESSAGE_REFS, {"ids": list(ids[start:start + 900])}).all()
        for key, run_id, campaign, recipient_id, channel, variant in rows:
            found[int(key or 0)] = MessageRef(int(key or 0), run_id, campaign, recipient_id, channel, variant)
    return found


def pause_run(session: Session, run_id: int, now: datetime, reason: str) -> None:
    """Mark a run paused (its planned messages wait), with why and when, in ``counts``."""
    run = session.get(Run, run_id)
    if run is not None and run.state != RunState.FINISHED:
        run.state = RunState.PAUSED
        run.counts = {**run.counts, "paused": {"at": now.isoformat(), "reason": reason}}
        session.add(run)


def resume_run(session: Session, run_id: int) -> str | None:
    """Set a paused run running again; returns why it had paused, or None if it was not."""
    run = session.get(Run, run_id)
    if run is None or run.state != RunState.PAUSED:
        return None
    reason = str((run.counts.get("paused") or {}).get("reason", ""))
    run.state = RunState.RUNNING
    run.counts = {k: v for k, v in run.counts.items() if k != "paused"}
    session.add(run)
    return reason


def deactivate_devices(session: Session, device_ids: Sequence[int], now: datetime) -> None:
    """Stop sending to devices whose provider said the token or subscription is gone."""
    if device_ids:
        session.execute(sa.update(Device).where(col(Device.id).in_(list(device_ids)))
                        .values(active=False, updated_at=now))


def messages_by_id(session: Session, ids: Sequence[int]) -> dict[int, Message]:
    found: dict[int, Message] = {}
    for start in range(0, len(ids), 900):
        for message in session.exec(select(Message).where(col(Message.id).in_(ids[start:start + 900]))).all():
            found[int(message.id or 0)] = message
    return found


def messages_by_header_id(session: Session, header_ids: Sequence[str]) -> dict[str, Message]:
    """Messages by their Message-ID header (``<...>``)."""
    found: dict[str, Message] = {}
    for start in range(0, len(header_ids), 900):
        chunk = list(header_ids[start:start + 900])
        for message in session.exec(select(Message).where(col(Message.header_message_id).in_(chunk))).all():
            found[str(message.header_message_id)] = message
    return found


def bounce_event(message: Message | ClaimedMessage, ts: datetime, *, kind: str, detail: str, source: str,
                 suffix: str = "") -> dict[str, Any]:
    """The `bounce` event of a message: ``kind`` hard (permanent) or soft, ``source`` smtp (refused
    while sending) or dsn (a delivery status notification that came back later)."""
    return {"id": f"m{message.id}.bounce.{source}{suffix}", "recipient_id": message.recipient_id, "type": "bounce",
            "ts": ts, "item_id": None, "campaign": message.campaign, "channel": message.channel or "email",
            "variant": message.variant, "position": None, "propensity": None, "value": None,
            "run_id": message.run_id, "message_id": message.id,
            "data": {"kind": kind, "detail": detail[:1000], "source": source}}


def triggering_events(session: Session, campaign: str, event_type: str, since: datetime,
                      limit: int = 5000) -> list[tuple[str, str, datetime]]:
    """(event id, recipient, time) of ``event_type`` events since ``since`` that have no run of
    ``campaign`` yet (a run's key ``event:<id>`` marks an event as planned)."""
    planned = select(Run.id).where(Run.campaign == campaign, Run.key == sa.literal("event:") + col(Event.id))
    rows = session.exec(select(Event.id, Event.recipient_id, Event.ts)
                        .where(Event.type == event_type, Event.ts >= since, ~planned.exists())
                        .order_by(col(Event.ts)).limit(limit)).all()
    return [(str(i), str(r), t) for i, r, t in rows]


def recover_stale(session: Session, now: datetime, lease: timedelta) -> Recovery:
    """The crash rule for any number of senders: a claim older than ``lease`` belongs to a sender
    that died. Claimed messages go back to the queue; messages in flight become ``review``."""
    cutoff = now - lease
    released = session.execute(
        sa.update(Message).where(col(Message.state) == MessageState.CLAIMED, col(Message.claimed_at) < cutoff)
        .values(state=MessageState.PLANNED, claimed_by=None, claimed_at=None, updated_at=now))
    review = [int(i) for i in session.exec(select(Message.id).where(
        Message.state == MessageState.SENDING, col(Message.claimed_at) < cutoff)).all() if i is not None]
    if review:
        session.execute(sa.update(Message).where(col(Message.id).in_(review))
                        .values(state=MessageState.REVIEW, updated_at=now,
                                last_error="in flight when its sender stopped; may or may not have been delivered"))
    return Recovery(released=int(released.rowcount or 0),  # type: ignore[attr-defined]
                    review=review)


def finish_done_runs(session: Session, now: datetime) -> list[int]:
    """Mark finished every running run with no message left to send; returns their ids."""
    running = session.exec(select(Run.id).where(Run.state == RunState.RUNNING)).all()
    return [int(run_id) for run_id in running if run_id is not None and finish_run_if_done(session, run_id, now)]


def sent_since(session: Session, recipient_ids: Sequence[str], since: datetime) -> list[tuple[str, datetime]]:
    """(recipient, sent_at) of their messages sent since ``since``, every campaign."""
    found: list[tuple[str, datetime]] = []
    for start in range(0, len(recipient_ids), 900):
        found.extend((str(r), t) for r, t in session.exec(
            select(Message.recipient_id, Message.sent_at).where(
                col(Message.recipient_id).in_(list(recipient_ids[start:start + 900])),
                Message.state == MessageState.SENT, col(Message.sent_at) >= since)).all() if t is not None)
    return found
