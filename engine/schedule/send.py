"""``kairos send``: plan a run (or resume an unfinished one) and pump it until nothing is due."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlmodel import col

from engine.config import Settings
from engine.decide import Policy
from engine.dispatch import email_transport
from engine.render.compose import EmailComposer
from engine.render.templates import TemplateSet
from engine.schedule.planning import plan_run
from engine.schedule.pump import BatchOutcome, SendContext, send_batch
from engine.spec.model import CampaignSpec
from engine.store import Store, outbox
from engine.store.tables import Message, MessageState


@dataclass
class SendReport:
    run_id: int
    resumed: bool
    planned: dict[str, int]
    states: dict[str, int] = field(default_factory=dict)
    review: list[int] = field(default_factory=list)
    released: int = 0
    deferred: int = 0
    next_at: datetime | None = None
    errors: list[str] = field(default_factory=list)
    failed: int = 0
    refused: int = 0


async def send_campaign(ctx: SendContext, *, now_all: bool = False) -> SendReport:
    """Send everything of ``ctx.spec`` that is due now; return what happened.

    :param now_all: send every planned message now, ignoring optimized send times.
    """
    now = ctx.clock()
    with ctx.store.session() as session:
        run = outbox.unfinished_run(session, ctx.spec.name)
        recovery = outbox.recover_run(session, run.id, now) if run is not None and run.id is not None else None
    if run is not None and run.id is not None:
        report = SendReport(run.id, resumed=True, planned={}, review=recovery.review if recovery else [],
                            released=recovery.released if recovery else 0)
    else:
        planned = plan_run(ctx.store, ctx.spec, now, rng=ctx.policy.rng)
        report = SendReport(planned.run_id, resumed=False, planned=planned.counts)
    if now_all:
        with ctx.store.session() as session:
            session.execute(sa.update(Message).where(col(Message.run_id) == report.run_id,
                                                     col(Message.state) == MessageState.PLANNED,
                                                     col(Message.send_at) > now).values(send_at=now))
    await pump_run(ctx, report)
    with ctx.store.session() as session:
        outbox.finish_run_if_done(session, report.run_id, ctx.clock())
        report.states = outbox.state_counts(session, report.run_id)
        report.deferred = report.states.get(MessageState.PLANNED, 0)
        report.next_at = outbox.next_send_at(session, report.run_id)
    return report


async def pump_run(ctx: SendContext, report: SendReport) -> None:
    """Send batches until no message is due, waiting out the retries of temporary failures."""
    try:
        while True:
            outcome: BatchOutcome | None = await send_batch(ctx, report.run_id)
            if outcome is not None:
                report.errors.extend(outcome.errors)
                report.failed += outcome.failed
                report.refused += outcome.refused
                continue
            with ctx.store.session() as session:
                retry_at = outbox.next_retry_at(session, report.run_id)
            if retry_at is None:
                return
            await asyncio.sleep(max(0.0, (retry_at - ctx.clock()).total_seconds()))
    finally:
        await ctx.transport.close()


def build_context(settings: Settings, store: Store, spec: CampaignSpec, rng: np.random.Generator,
                  clock: Callable[[], datetime], worker: str = "kairos") -> SendContext:
    """The pump's context from settings: policy, templates, the email composer and the transport.

    :raises ConfigError: when the tracking secret is not set, or the DKIM key cannot be used.
    :raises RenderError: when a variant's template does not compile (syntax, or refused by the sandbox).
    """
    templates = TemplateSet(settings.paths.templates)
    composer = EmailComposer.from_settings(settings, spec, templates)
    for variant in spec.variants:  # a template that cannot compile is bad input: refuse before planning
        templates.compile(spec, variant)
    return SendContext(
        store=store, spec=spec, policy=Policy(spec, rng), templates=templates,
        transport=email_transport(settings.email, settings.paths), from_address=settings.email.from_address,
        clock=clock, composer=composer, worker=worker, batch_size=settings.sending.batch_size,
    )
