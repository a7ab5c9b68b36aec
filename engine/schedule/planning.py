"""Plan a run: the audience at this moment, and a send time for each member.

Planning decides *who* and *when*; *what* (items, channel, variant) is decided by the pump when
each message goes out. Every audience member gets one Message row: ``planned`` with its send_at,
or a terminal state saying why not (holdout, suppressed, capped, no_consent).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlmodel import Session

from engine.audience.build import AUDIENCE_CHUNK, Member, audience_chunks, build_audience
from engine.audience.propensity import PropensityModel
from engine.errors import SpecError
from engine.features.content import build_item_table
from engine.learn.sendtime import CampaignSendTimes, SendTime, hour_prior, plan_campaign_send_times
from engine.spec.model import CampaignSpec
from engine.store import Store, outbox, queries
from engine.store.db import JsonText, dumps
from engine.store.tables import MessageState

_STATE_OF_STATUS = {"send": MessageState.PLANNED, "holdout": MessageState.HOLDOUT,
                    "suppressed": MessageState.SUPPRESSED, "capped": MessageState.CAPPED,
                    "no_consent": MessageState.NO_CONSENT}


@dataclass(frozen=True)
class PlannedRun:
    run_id: int
    counts: dict[str, int]
    created: bool = True


def require_content(store: Store, spec: CampaignSpec, now: datetime) -> None:
    """Refuse to plan a campaign whose content pool has nothing to send."""
    with store.session() as session:
        if len(build_item_table(session, spec.content, now)) == 0:
            filtered = " that passes [content] where" if spec.content.where is not None else ""
            raise SpecError(spec.source, "content.pool",
                            f"the content pool {spec.content.pool!r} has no item{filtered}; "
                            "import some with `kairos import content FILE`",
                            line=spec.line_of("content.pool"))


def spec_record(spec: CampaignSpec) -> dict[str, Any]:
    """What the store keeps about a campaign version (the file itself stays the source)."""
    return {"goal": spec.goal, "channels": list(spec.channels), "variants": [v.name for v in spec.variants],
            "pool": spec.content.pool, "items": spec.content.items}


@dataclass(frozen=True, slots=True)
class PlannedMember:
    member: Member
    send_time: SendTime | None


def plan_members(session: Session, spec: CampaignSpec, now: datetime,
                 propensity: PropensityModel | None = None,
                 rng: np.random.Generator | None = None,
                 wall_clock: datetime | None = None, attributes: bool = True) -> list[PlannedMember]:
    """The audience at ``now`` with a send time for everyone who will be sent to. Writes nothing.

    :param propensity: the model behind ``predicted`` and ``tier()`` (default: the audience's own).
    :param rng: the source of send-time exploration.
    :param wall_clock: a naive local time (a recipient-time cron's firing): each recipient's send
        time is planned from that wall-clock time in their own zone, not from ``now``.
    :param attributes: False: members' rows without their attributes.
    """
    return [entry for chunk in planned_chunks(session, spec, now, propensity, rng, wall_clock, attributes)
            for entry in chunk]


def planned_chunks(session: Session, spec: CampaignSpec, now: datetime,
                   propensity: PropensityModel | None = None, rng: np.random.Generator | None = None,
                   wall_clock: datetime | None = None, attributes: bool = True,
                   size: int = AUDIENCE_CHUNK) -> Iterator[list[PlannedMember]]:
    """:func:`plan_members` a chunk of at most ``size`` members at a time (see
    :func:`engine.audience.build.audience_chunks`); the send-time model reads what it learns from
    the whole audience before it plans the first chunk."""
    def audience() -> Iterator[list[Member]]:
        return audience_chunks(session, spec, now, propensity, attributes=attributes, size=size)

    chunks = audience()
    first = next(chunks, [])
    second = next(chunks, None)
    prior = None
    if spec.schedule.send_time == "optimize" and (second is not None or wall_clock is not None):
        # The model's prior is a sum over the whole audience: first passes read it chunk by chunk
        # (time zones planned apart share it too).
        def addressed() -> Iterator[tuple[list[str], list[str]]]:
            for members in (audience() if second is not None else [first]):
                rows = [m.recipient for m in members if m.status == "send"]
                yield [r.id for r in rows], [r.timezone for r in rows]

        prior = hour_prior(session, spec.schedule, addressed, now)
    planner = CampaignSendTimes(session, spec, now, rng, prior)
    for members in itertools.chain([first], [second] if second is not None else [], chunks):
        sending = [m for m in members if m.status == "send"]
        send_time: dict[str, SendTime] = {}
        groups = ({None: sending} if wall_clock is None else
                  {zone: [m for m in sending if m.recipient.timezone == zone]
                   for zone in sorted({m.recipient.timezone for m in sending})})
        for zone, group in groups.items():
            start = now if zone is None or wall_clock is None else max(now, wall_clock.replace(tzinfo=ZoneInfo(zone)))
            times = planner.plan([m.recipient.id for m in group], [m.recipient.timezone for m in group], start)
            send_time.update((m.recipient.id, t) for m, t in zip(group, times, strict=True))
        yield [PlannedMember(m, send_time.get(m.recipient.id)) for m in members]


def plan_run(store: Store, spec: CampaignSpec, now: datetime, trigger: str = "manual",
             rng: np.random.Generator | None = None, *, key: str | None = None,
             wall_clock: datetime | None = None) -> PlannedRun:
    """Create a run of ``spec`` at ``now`` with one Message per audience member, in one transaction.

    The audience is planned and written a chunk at a time, so the memory it takes does not grow
    with it (:func:`planned_chunks`).

    :param key: makes the run idempotent: when a run of the campaign with that key exists (a
        firing already planned by this or another process), nothing is written and that run is
        returned with ``created`` False.
    :param wall_clock: see :func:`plan_members`.
    """
    require_content(store, spec, now)
    with store.session() as session:
        existing = outbox.run_with_key(session, spec.name, key) if key is not None else None
        if existing is not None and existing.id is not None:
            return PlannedRun(existing.id, {}, created=False)
        queries.save_campaign(session, spec.name, str(spec.source), spec.spec_hash, spec_record(spec))
        run = outbox.start_run(session, spec.name, spec.spec_hash, trigger, now, key=key)
        assert run.id is not None
        counts: dict[str, int] = {}
        logged: dict[SendTime, JsonText] = {}
        for chunk in planned_chunks(session, spec, now, rng=rng, wall_clock=wall_clock, attributes=False):
            for entry in chunk:
                counts[entry.member.status] = counts.get(entry.member.status, 0) + 1
            outbox.insert_messages(session, [_message_row(run.id, spec, entry, now, logged) for entry in chunk])
        if not counts.get("send"):
            outbox.finish_run_if_done(session, run.id, now)
    return PlannedRun(run.id, counts)


def _message_row(run_id: int, spec: CampaignSpec, entry: PlannedMember, now: datetime,
                 logged: dict[SendTime, JsonText]) -> dict[str, Any]:
    """The Message row of one audience member: planned with its send time, or why not.

    :param logged: the decision's JSON per send time, encoded once for the recipients sharing one.
    """
    when = entry.send_time
    decision = None
    if when is not None:
        decision = logged.get(when)
        if decision is None:
            decision = logged[when] = JsonText(dumps({"send_time": {
                "local_hour": when.local_hour, "probability": when.probability, "model": when.model}}))
    return {
        "run_id": run_id, "campaign": spec.name, "recipient_id": entry.member.recipient.id,
        "state": _STATE_OF_STATUS[entry.member.status], "send_at": when.at if when else now,
        "decision": decision, "attempts": 0, "updated_at": now,
    }


@dataclass(frozen=True)
class TriggeringEvent:
    id: str
    recipient_id: str
    ts: datetime


def plan_triggered(store: Store, spec: CampaignSpec, events: Sequence[TriggeringEvent], now: datetime,
                   rng: np.random.Generator | None = None) -> dict[str, int]:
    """One run per triggering event (key ``event:<id>``): its recipient's message, sent
    ``trigger.delay`` after the event (or now, if that has passed), inside the window.

    An event whose recipient is not in the audience still gets its (empty, finished) run, so it
    is looked at once. Returns counts by status, plus ``not_in_audience``.
    """
    trigger = spec.schedule.trigger
    assert trigger is not None
    require_content(store, spec, now)
    counts: dict[str, int] = {}
    logged: dict[SendTime, JsonText] = {}
    with store.session() as session:
        wanted = {event.recipient_id for event in events}
        members = {m.recipient.id: m for m in build_audience(session, spec, now) if m.recipient.id in wanted}
        for event in events:
            run = outbox.start_run(session, spec.name, spec.spec_hash, f"event:{trigger.event}", now,
                                   key=f"event:{event.id}")
            assert run.id is not None
            member = members.get(event.recipient_id)
            if member is None:
                counts["not_in_audience"] = counts.get("not_in_audience", 0) + 1
                outbox.finish_run_if_done(session, run.id, now)
                continue
            when = None
            if member.status == "send":
                start = max(now, event.ts + trigger.delay)
                [when] = plan_campaign_send_times(session, spec, [member.recipient.id], [member.recipient.timezone],
                                                  start, rng)
            outbox.insert_messages(session, [_message_row(run.id, spec, PlannedMember(member, when), now, logged)])
            counts[member.status] = counts.get(member.status, 0) + 1
            if when is None:
                outbox.finish_run_if_done(session, run.id, now)
    return counts
