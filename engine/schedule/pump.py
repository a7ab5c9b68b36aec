"""The pump: claim due messages, decide, render, dispatch, record, one batch at a time.

:func:`send_batch` is the loop of DESIGN.md in one short function. Its commits bracket the
network call: a batch is committed as ``sending`` (with its decisions) before any byte leaves,
and its results are committed after. If the process dies in between, only that batch is
ambiguous, and :func:`engine.store.outbox.recover_run` reports it for review.

What a result does to its message (:func:`_record`):

- accepted: ``sent``, with its `sent` events;
- refused for good (5xx, an invalid token): ``failed``; a recipient's 5xx at SMTP ``RCPT`` is also
  a `bounce` event and a hard-bounce suppression of the address;
- refused for now (4xx, 421, a drop, HTTP 429/503), after the transport's own retries: back to
  ``planned`` with a backoff (the server's Retry-After when longer), until ``max_attempts``;
- the transport paused (too many server failures in a row): back to ``planned`` untouched;
- the connection failed after the whole message was handed over: ``review`` - it may have been
  delivered, so it is reported rather than re-sent.

A push message goes to every active device of its recipient: it is sent when any device
accepted it; devices whose token is gone are deactivated.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from engine.decide import REFRESH_COST_FACTOR, Decision, Policy
from engine.dispatch.base import Envelope, PushEnvelope, PushNotification, Transport
from engine.dispatch.retry import Backoff
from engine.errors import DispatchError, DispatchPaused, PushError, RenderError, SmtpError
from engine.features.content import ItemTable
from engine.render.compose import EmailComposer
from engine.render.mime import message_id, sender_domain
from engine.render.push import PushTemplates
from engine.render.templates import TemplateSet
from engine.schedule.send_rules import SendRules, apply_send_rules
from engine.spec.model import CampaignSpec
from engine.store import Store, outbox, queries
from engine.store.db import JsonText, dumps
from engine.store.outbox import ClaimedMessage
from engine.store.queries import RecipientRow
from engine.store.tables import ContentItem, Device, MessageState

MAX_ATTEMPTS = 4
# The smallest batch that several senders split the end of a run into (:func:`batch_limit`).
TAIL_BATCH = 50
# The content pool and its counts are read again when the table in hand is older than this: a
# batch takes well under a second, so re-reading per batch would cost more than the decisions.
ITEM_TABLE_REFRESH = timedelta(seconds=10)


# Sending allocates many short-lived containers per message (template contexts, rows, futures):
# at CPython's default first threshold (700) the cyclic collector ran some 2,300 times for 20,000
# messages, full collections included, about 15% of the CPU. A batch of 1,000 keeps fewer than
# 50,000 containers alive at once and leaves no cyclic garbage (its queries are built once:
# tests/schedule/test_pump_garbage.py), so at this threshold the collector seldom runs while
# sending (27 times in all for 20,000 messages, against 78 at 10,000) for the same peak memory.
COLLECTOR_THRESHOLDS = (50_000, 10, 10)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the garbage collector at :data:`COLLECTOR_THRESHOLDS` inside, as before after."""
    previous = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@dataclass(frozen=True)
class Requeue:
    """When a message that failed for now is tried again: ``backoff.delay(attempts)`` later,
    at most ``max_attempts`` times in all (each a claim, with the transport's own retries)."""

    max_attempts: int = MAX_ATTEMPTS
    backoff: Backoff = field(default_factory=Backoff)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0), compare=False)

    def delay(self, attempts: int, retry_after: float | None) -> timedelta:
        return timedelta(seconds=max(retry_after or 0.0, self.backoff.delay(attempts, self.rng)))


@dataclass
class SendContext:
    """Everything the pump needs for one campaign. Built by the caller, passed in.

    :param composer: renders, tracks, builds and signs each email (VERP sender, List-Unsubscribe, DKIM).
    :param senders: processes pumping the same run at once (``kairos send --workers``): with
        more than one, batches shrink as the run nears its end (:func:`batch_limit`).
    """

    store: Store
    spec: CampaignSpec
    policy: Policy
    templates: TemplateSet
    transport: Transport[Envelope]
    from_address: str
    clock: Callable[[], datetime]
    composer: EmailComposer
    worker: str = "kairos"
    batch_size: int = 500
    senders: int = 1
    push: Transport[PushEnvelope] | None = None
    requeue: Requeue = field(default_factory=Requeue)
    rules: SendRules = field(default_factory=SendRules)
    push_templates: PushTemplates = field(default_factory=PushTemplates)
    item_table: tuple[datetime, ItemTable] | None = field(default=None, repr=False)
    item_refresh: timedelta = ITEM_TABLE_REFRESH
    timer: Callable[[], float] = field(default=time.perf_counter, repr=False)  # what a read of the table costs

    def items_at(self, session: Any, now: datetime) -> ItemTable:
        """The campaign's item table as of ``now``, read again once ``ITEM_TABLE_REFRESH`` old, or
        :data:`~engine.decide.REFRESH_COST_FACTOR` times as long as the last read took: the counts
        are read over the event log, which a long run keeps growing, and re-reading them never
        costs more than a tenth of the time."""
        cached = self.item_table
        if cached is None or not timedelta(0) <= now - cached[0] < self.item_refresh:
            started = self.timer()
            self.item_table = cached = (now, self.policy.item_table(session, now))
            took = self.timer() - started
            self.item_refresh = max(ITEM_TABLE_REFRESH, timedelta(seconds=REFRESH_COST_FACTOR * took))
        return cached[1]


@dataclass
class BatchOutcome:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    refused: int = 0
    bounced: int = 0
    retrying: int = 0
    suppressed: int = 0
    no_consent: int = 0
    paused: int = 0
    deferred: int = 0
    capped: int = 0
    pause_reason: str | None = None
    review: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Prepared(NamedTuple):
    message: ClaimedMessage
    decision: Decision
    envelopes: tuple[Envelope | PushEnvelope, ...]
    header_id: str
    log: JsonText  # the decision as logged, on the message and its `sent` event: encoded once


async def send_batch(ctx: SendContext, run_id: int | None = None) -> BatchOutcome | None:
    """Send one batch of due messages; None when nothing is due."""
    now = ctx.clock()
    with ctx.store.session() as session:
        limit = batch_limit(session, ctx, now)
        batch = outbox.claim_due_messages(session, now, limit, ctx.worker, run_id, ctx.spec.name)
    if not batch:
        return None
    outcome = BatchOutcome(claimed=len(batch))
    with ctx.store.session() as session:
        prepared, skipped = _decide_and_render(session, ctx, batch, now, outcome)
        outbox.update_messages(session, skipped + [_sending(p, now) for p in prepared])
    results = await _dispatch(ctx, prepared)
    finished = ctx.clock()
    with ctx.store.session() as session:
        _record(session, ctx, prepared, results, finished, outcome)
    return outcome


def batch_limit(session: Any, ctx: SendContext, now: datetime) -> int:
    """How many messages to claim: ``batch_size``, or, with several senders, a share of what is
    still due - half of it divided among them, at least :data:`TAIL_BATCH`. Full batches would
    leave the last one running on one sender while the others have nothing left (a whole
    batch's time at the end of every run); shrinking shares end together."""
    if ctx.senders <= 1:
        return ctx.batch_size
    due = outbox.due_count(session, now, cap=2 * ctx.senders * ctx.batch_size)
    return min(ctx.batch_size, max(TAIL_BATCH, -(-due // (2 * ctx.senders))))


async def _dispatch(ctx: SendContext, prepared: Sequence[_Prepared]) -> list[list[Any]]:
    """Hand every envelope to its transport at once; the results grouped per message."""
    async def one(envelope: Envelope | PushEnvelope) -> Any:
        if isinstance(envelope, Envelope):
            return await ctx.transport.send(envelope)
        if ctx.push is None:
            raise PushError("push", "no push provider is configured ([push.fcm], [push.apns], [push.webpush])",
                            permanent=True)
        return await ctx.push.send(envelope)

    flat = [envelope for item in prepared for envelope in item.envelopes]
    results = await asyncio.gather(*(one(e) for e in flat), return_exceptions=True)
    grouped: list[list[Any]] = []
    position = 0
    for item in prepared:
        grouped.append(list(results[position:position + len(item.envelopes)]))
        position += len(item.envelopes)
    return grouped


def _decide_and_render(session: Any, ctx: SendContext, batch: Sequence[ClaimedMessage], now: datetime,
                       outcome: BatchOutcome) -> tuple[list[_Prepared], list[dict[str, Any]]]:
    """Check suppressions and consent as of now, decide, and render each message."""
    recipients = queries.recipients_by_id(session, [m.recipient_id for m in batch])
    verdict = apply_send_rules(session, ctx.rules, batch, recipients, now)
    batch = verdict.allowed
    skipped: list[dict[str, Any]] = list(verdict.changes)
    outcome.deferred += verdict.deferred
    outcome.capped += verdict.capped
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
    items = ctx.items_at(session, now)
    decisions = {d.recipient_id: d for d in ctx.policy.decide(session, eligible, now, items=items)}
    views = ItemViews({item.id: item for item in items.items})
    devices = queries.active_devices(session, [d.recipient_id for d in decisions.values() if d.channel == "push"])
    prepared = []
    domain = sender_domain(ctx.from_address)
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
            message.run_id, message.id or 0, ctx.spec.name, domain)
        try:
            if decision.channel == "push":
                envelopes: tuple[Envelope | PushEnvelope, ...] = _push_envelopes(
                    ctx, message, recipient, decision, views, devices.get(recipient.id, []))
            else:
                envelopes = (_envelope(ctx, message, recipient, decision, views, header_id, now),)
        except RenderError as exc:
            skipped.append(_final(message, MessageState.FAILED, now, str(exc)))
            outcome.failed += 1
            outcome.errors.append(str(exc))
            continue
        if not envelopes:
            skipped.append(_final(message, MessageState.NO_CONSENT, now, "no active push device at send time"))
            outcome.no_consent += 1
            continue
        prepared.append(_Prepared(message, decision, envelopes, header_id,
                                  JsonText(dumps(_decision_log(message, decision)))))
    return prepared, skipped


class ItemViews:
    """What a template sees of each content item, built once per (item, slot) for a batch and
    shared by its messages: templates cannot change them (the sandbox is immutable)."""

    def __init__(self, items: Mapping[str, ContentItem]) -> None:
        self._items = items
        self._views: dict[tuple[str, int], dict[str, Any]] = {}

    def view(self, item_id: str, slot: int) -> dict[str, Any]:
        found = self._views.get((item_id, slot))
        if found is None:
            item = self._items[item_id]
            found = self._views[(item_id, slot)] = {
                "id": item.id, "title": item.title, "url": item.url, "topic": item.topic,
                "published_at": item.published_at, "attributes": dict(item.attributes), "slot": slot}
        return found


def template_context(spec: CampaignSpec, recipient: RecipientRow, decision: Decision,
                     items: ItemViews) -> dict[str, Any]:
    """What a template sees: ``recipient``, ``items`` (in slot order) and ``campaign``."""
    return {
        "recipient": {"id": recipient.id, "email": recipient.email, "locale": recipient.locale,
                      "timezone": recipient.timezone, "attributes": dict(recipient.attributes)},
        "items": [items.view(pick.id, pick.slot) for pick in decision.items],
        "campaign": {"name": spec.name, "variant": decision.variant},
    }


def _envelope(ctx: SendContext, message: ClaimedMessage, recipient: RecipientRow, decision: Decision,
              items: ItemViews, header_id: str, now: datetime) -> Envelope:
    """Render, track, build and sign the message: VERP sender, List-Unsubscribe, DKIM (engine.render.compose)."""
    assert message.id is not None and recipient.email is not None
    context = template_context(ctx.spec, recipient, decision, items)
    composed = ctx.composer.compose(
        message_key=message.id, recipient_id=recipient.id, to=recipient.email, variant=decision.variant,
        context=context, item_urls={item["url"]: item["id"] for item in context["items"]},
        header_message_id=header_id, date=now)
    return Envelope(key=message.id, sender=composed.sender, recipients=(recipient.email,), data=composed.data,
                    crlf=True)


def _push_envelopes(ctx: SendContext, message: ClaimedMessage, recipient: RecipientRow, decision: Decision,
                    items: ItemViews, devices: Sequence[Device]) -> tuple[PushEnvelope, ...]:
    """One notification per active device of the recipient."""
    assert message.id is not None
    variant = ctx.spec.variant(decision.variant)
    rendered = ctx.push_templates.render(variant, template_context(ctx.spec, recipient, decision, items))
    notification = PushNotification(
        title=rendered.title, body=rendered.body, url=rendered.url,
        data=(("campaign", ctx.spec.name), ("variant", decision.variant), ("message", str(message.id))),
        collapse_key=ctx.spec.name)
    return tuple(PushEnvelope(key=message.id, device_id=int(device.id or 0), platform=device.platform,
                              token=device.token, notification=notification) for device in devices)


def _decision_log(message: ClaimedMessage, decision: Decision) -> dict[str, Any]:
    log = decision.log()
    if message.decision and "send_time" in message.decision:
        log["send_time"] = message.decision["send_time"]
    return log


def _sending(prepared: _Prepared, now: datetime) -> dict[str, Any]:
    message, decision = prepared.message, prepared.decision
    return {"id": message.id, "state": MessageState.SENDING, "channel": decision.channel,
            "variant": decision.variant, "decision": prepared.log,
            "header_message_id": prepared.header_id, "attempts": message.attempts + 1, "updated_at": now}


def _final(message: ClaimedMessage, state: str, now: datetime, reason: str) -> dict[str, Any]:
    return {"id": message.id, "state": state, "last_error": reason[:2000], "updated_at": now}


def _record(session: Any, ctx: SendContext, prepared: Sequence[_Prepared], results: Sequence[Sequence[Any]],
            now: datetime, outcome: BatchOutcome) -> None:
    """Commit what each message's results mean (the rules in the module docstring)."""
    changes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    gone: list[int] = []
    for item, answers in zip(prepared, results, strict=True):
        message = item.message
        errors = [a for a in answers if isinstance(a, BaseException)]
        for error in errors:
            if not isinstance(error, DispatchError):
                raise error
        failures: list[DispatchError] = [e for e in errors if isinstance(e, DispatchError)]
        gone.extend(envelope.device_id for envelope, answer in zip(item.envelopes, answers, strict=True)
                    if isinstance(envelope, PushEnvelope) and isinstance(answer, PushError) and answer.device_gone)
        if len(failures) < len(answers):
            changes.append({"id": message.id, "state": MessageState.SENT, "sent_at": now, "updated_at": now,
                            "last_error": "; ".join(map(str, failures))[:2000] or None})
            outcome.sent += 1
            events.extend(sent_events(message, item.decision, ctx.spec, now, item.log))
            continue
        reason = "; ".join(dict.fromkeys(map(str, failures)))
        paused = [e for e in failures if isinstance(e, DispatchPaused)]
        temporary = [e for e in failures if not (e.permanent or e.ambiguous or isinstance(e, DispatchPaused))]
        if paused and not temporary:
            changes.append({"id": message.id, "state": MessageState.PLANNED, "attempts": message.attempts,
                            "updated_at": now, "claimed_by": None, "claimed_at": None})
            outcome.paused += 1
            outcome.pause_reason = str(paused[0].last or paused[0])
        elif temporary and message.attempts + 1 < ctx.requeue.max_attempts:
            retry_after = max((e.retry_after or 0.0 for e in temporary), default=0.0)
            changes.append({"id": message.id, "state": MessageState.PLANNED, "last_error": reason[:2000],
                            "send_at": now + ctx.requeue.delay(message.attempts + 1, retry_after), "updated_at": now,
                            "claimed_by": None, "claimed_at": None})
            outcome.retrying += 1
        elif any(e.ambiguous for e in failures) and not temporary:
            changes.append(_final(message, MessageState.REVIEW, now, reason))
            outcome.review.append(int(message.id or 0))
            outcome.errors.append(reason)
        elif temporary:
            changes.append(_final(message, MessageState.FAILED, now, f"gave up after {message.attempts + 1} "
                                  f"attempts: {reason}"))
            outcome.failed += 1
            outcome.errors.append(reason)
        else:
            changes.append(_final(message, MessageState.FAILED, now, reason))
            outcome.refused += 1
            bounce = next((e for e in failures if isinstance(e, SmtpError) and e.recipient), None)
            if bounce is not None and isinstance(item.envelopes[0], Envelope):
                address = item.envelopes[0].recipients[0]
                events.append(outbox.bounce_event(message, now, kind="hard", detail=str(bounce), source="smtp"))
                queries.add_suppression(session, reason="hard_bounce", recipient_id=message.recipient_id,
                                        email=address, channel="email", detail=str(bounce)[:500])
                outcome.bounced += 1
    # The events first: their rows are converted before the first write takes SQLite's lock,
    # which the other sending processes then wait on for the writes alone.
    outbox.record_events(session, events)
    outbox.update_messages(session, changes)
    outbox.deactivate_devices(session, gone, now)


def sent_events(message: ClaimedMessage, decision: Decision, spec: CampaignSpec, now: datetime,
                log: dict[str, Any] | JsonText | None = None) -> list[dict[str, Any]]:
    """One `sent` event per item slot (the shape of imported impressions); slot 0 carries the
    whole decision (``log``, when the caller already has it), so the log answers "why did this
    recipient get this?"."""
    log = log if log is not None else _decision_log(message, decision)
    return [{
        "id": f"m{message.id}.{pick.slot}", "recipient_id": message.recipient_id, "type": "sent", "ts": now,
        "item_id": pick.id, "campaign": spec.name, "channel": decision.channel, "variant": decision.variant,
        "position": pick.slot, "propensity": pick.probability, "value": None, "run_id": message.run_id,
        "message_id": message.id, "data": log if pick.slot == 0 else None,
    } for pick in decision.items]
