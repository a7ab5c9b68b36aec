"""The pump: claim due messages, decide, render, dispatch, record, one batch at a time.

:func:`send_batch` is the loop of DESIGN.md in one short function. Its commits bracket the
network call: a batch is committed as ``sending`` (with its decisions) before any byte leaves,
and its results are committed after. If the process dies in between, only that batch is
ambiguous, and :func:`engine.store.outbox.recover_run` reports it for review.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.decide import Decision, Policy
from engine.dispatch.base import Envelope, Transport
from engine.errors import DispatchError, RenderError
from engine.render.compose import EmailComposer
from engine.render.mime import message_id, sender_domain
from engine.render.templates import TemplateSet
from engine.spec.model import CampaignSpec
from engine.store import Store, outbox, queries
from engine.store.queries import RecipientRow
from engine.store.tables import Message, MessageState

MAX_ATTEMPTS = 4
RETRY_BASE = timedelta(seconds=1)


@dataclass
class SendContext:
    """Everything the pump needs for one campaign. Built by the caller, passed in."""

    store: Store
    spec: CampaignSpec
    policy: Policy
    templates: TemplateSet
    transport: Transport
    from_address: str
    clock: Callable[[], datetime]
    composer: EmailComposer
    worker: str = "kairos"
    batch_size: int = 500


@dataclass
class BatchOutcome:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    refused: int = 0
    retrying: int = 0
    suppressed: int = 0
    no_consent: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Prepared:
    message: Message
    decision: Decision
    envelope: Envelope
    header_id: str


async def send_batch(ctx: SendContext, run_id: int | None = None) -> BatchOutcome | None:
    """Send one batch of due messages; None when nothing is due."""
    now = ctx.clock()
    with ctx.store.session() as session:
        batch = outbox.claim_due_messages(session, now, ctx.batch_size, ctx.worker, run_id)
    if not batch:
        return None
    outcome = BatchOutcome(claimed=len(batch))
    with ctx.store.session() as session:
        prepared, skipped = _decide_and_render(session, ctx, batch, now, outcome)
        outbox.update_messages(session, skipped + [_sending(p, now) for p in prepared])
    results = await asyncio.gather(*(ctx.transport.send(p.envelope) for p in prepared), return_exceptions=True)
    finished = ctx.clock()
    with ctx.store.session() as session:
        changes, events = _record(prepared, results, finished, ctx.spec, outcome)
        outbox.update_messages(session, changes)
        outbox.record_events(session, events)
    return outcome


def _decide_and_render(session: Any, ctx: SendContext, batch: Sequence[Message], now: datetime,
                       outcome: BatchOutcome) -> tuple[list[_Prepared], list[dict[str, Any]]]:
    """Check suppressions and consent as of now, decide, and render each message."""
    recipients = queries.recipients_by_id(session, [m.recipient_id for m in batch])
    skipped: list[dict[str, Any]] = []
    present: list[RecipientRow] = []
    for message in batch:
        if message.recipient_id in recipients:
            present.append(recipients[message.recipient_id])
        else:
            skipped.append(_final(message, MessageState.FAILED, now, "recipient no longer exists"))
            outcome.failed += 1
    suppressed: set[str] = set()
    for channel in ctx.spec.channels:
        suppressed |= queries.suppressed_recipients(session, present, channel)
    eligible = [r for r in present if r.id not in suppressed]
    items = ctx.policy.item_table(session, now)
    decisions = {d.recipient_id: d for d in ctx.policy.decide(session, eligible, now, items=items)}
    by_id = {item.id: item for item in items.items}
    prepared = []
    for message in batch:
        recipient = recipients.get(message.recipient_id)
        if recipient is None:
            continue
        if recipient.id in suppressed:
            skipped.append(_final(message, MessageState.SUPPRESSED, now, "suppressed at send time"))
            outcome.suppressed += 1
            continue
        decision = decisions.get(recipient.id)
        if decision is None:
            skipped.append(_final(message, MessageState.NO_CONSENT, now, "no consent or address at send time"))
            outcome.no_consent += 1
            continue
        header_id = message.header_message_id or message_id(
            message.run_id, message.id or 0, ctx.spec.name, sender_domain(ctx.from_address))
        try:
            envelope = _envelope(ctx, message, recipient, decision, by_id, header_id, now)
        except RenderError as exc:
            skipped.append(_final(message, MessageState.FAILED, now, str(exc)))
            outcome.failed += 1
            outcome.errors.append(str(exc))
            continue
        prepared.append(_Prepared(message, decision, envelope, header_id))
    return prepared, skipped


def template_context(spec: CampaignSpec, recipient: RecipientRow, decision: Decision,
                     items: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: ``recipient``, ``items`` (in slot order) and ``campaign``."""
    return {
        "recipient": {"id": recipient.id, "email": recipient.email, "locale": recipient.locale,
                      "timezone": recipient.timezone, "attributes": dict(recipient.attributes)},
        "items": [{"id": item.id, "title": item.title, "url": item.url, "topic": item.topic,
                   "published_at": item.published_at, "attributes": dict(item.attributes), "slot": pick.slot}
                  for pick in decision.items for item in [items[pick.id]]],
        "campaign": {"name": spec.name, "variant": decision.variant},
    }


def _envelope(ctx: SendContext, message: Message, recipient: RecipientRow, decision: Decision,
              items: dict[str, Any], header_id: str, now: datetime) -> Envelope:
    """Render, track, build and sign the message: VERP sender, List-Unsubscribe, DKIM (engine.render.compose)."""
    assert message.id is not None and recipient.email is not None
    context = template_context(ctx.spec, recipient, decision, items)
    composed = ctx.composer.compose(
        message_key=message.id, recipient_id=recipient.id, to=recipient.email, variant=decision.variant,
        context=context, item_urls={item["url"]: item["id"] for item in context["items"]},
        header_message_id=header_id, date=now)
    return Envelope(key=message.id, sender=composed.sender, recipients=(recipient.email,), data=composed.data)


def _decision_log(message: Message, decision: Decision) -> dict[str, Any]:
    log = decision.log()
    if message.decision and "send_time" in message.decision:
        log["send_time"] = message.decision["send_time"]
    return log


def _sending(prepared: _Prepared, now: datetime) -> dict[str, Any]:
    message, decision = prepared.message, prepared.decision
    return {"id": message.id, "state": MessageState.SENDING, "channel": decision.channel,
            "variant": decision.variant, "decision": _decision_log(message, decision),
            "header_message_id": prepared.header_id, "attempts": message.attempts + 1, "updated_at": now}


def _final(message: Message, state: str, now: datetime, reason: str) -> dict[str, Any]:
    return {"id": message.id, "state": state, "last_error": reason[:2000], "updated_at": now}


def _record(prepared: Sequence[_Prepared], results: Sequence[Any], now: datetime, spec: CampaignSpec,
            outcome: BatchOutcome) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    changes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for item, result in zip(prepared, results, strict=True):
        message, decision = item.message, item.decision
        if isinstance(result, BaseException):
            if not isinstance(result, DispatchError):
                raise result
            attempts = message.attempts + 1
            if result.permanent or attempts >= MAX_ATTEMPTS:
                changes.append(_final(message, MessageState.FAILED, now, str(result)))
                if result.permanent:
                    outcome.refused += 1
                else:
                    outcome.failed += 1
                outcome.errors.append(str(result))
            else:
                changes.append({"id": message.id, "state": MessageState.PLANNED, "last_error": str(result),
                                "send_at": now + RETRY_BASE * 2 ** (attempts - 1), "updated_at": now,
                                "claimed_by": None, "claimed_at": None})
                outcome.retrying += 1
            continue
        changes.append({"id": message.id, "state": MessageState.SENT, "sent_at": now, "updated_at": now,
                        "last_error": None})
        outcome.sent += 1
        events.extend(sent_events(message, decision, spec, now))
    return changes, events


def sent_events(message: Message, decision: Decision, spec: CampaignSpec, now: datetime) -> list[dict[str, Any]]:
    """One `sent` event per item slot (the shape of imported impressions); slot 0 carries the
    whole decision, so the log answers "why did this recipient get this?"."""
    log = _decision_log(message, decision)
    return [{
        "id": f"m{message.id}.{pick.slot}", "recipient_id": message.recipient_id, "type": "sent", "ts": now,
        "item_id": pick.id, "campaign": spec.name, "channel": decision.channel, "variant": decision.variant,
        "position": pick.slot, "propensity": pick.probability, "value": None, "run_id": message.run_id,
        "message_id": message.id, "data": log if pick.slot == 0 else None,
    } for pick in decision.items]
