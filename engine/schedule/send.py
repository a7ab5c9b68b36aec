"""``kairos send``: plan a run (or resume an unfinished one) and pump it until nothing is due.

A run stops early when its transport pauses (too many consecutive server failures): it is marked
``paused`` with the reason, its untried messages stay planned, and the next ``kairos send`` of
the campaign resumes it like any unfinished run.

``workers`` > 1 pumps the run from that many processes (the CPU-bound decide and render steps
then use every core): the extra ones are forked first, before the event loop and with no
database connection open, so they start with the code already loaded (spawned processes, where
fork is not available, load it while the run is planned); they build their own context, are told
the run's id (or to exit, if planning failed), claim batches from the same outbox - SQLite's
write lock or PostgreSQL's ``FOR UPDATE SKIP LOCKED`` keeps claims disjoint - and exit when
nothing is due. Each has at most one batch in flight. They die with the process that started
them (Linux's parent-death signal), so a killed sender is one crash under one rule, with no
orphan still sending behind the resumed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import col

from engine.config import Settings
from engine.decide import Policy
from engine.dispatch import Backoff, Limits, email_transport, push_transport, with_policies
from engine.render.compose import EmailComposer
from engine.render.templates import TemplateSet
from engine.schedule.planning import plan_run
from engine.schedule.pump import BatchOutcome, Requeue, SendContext, fewer_collections, send_batch
from engine.schedule.send_rules import SendRules
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
    bounced: int = 0
    in_flight_review: list[int] = field(default_factory=list)
    resumed_from_pause: str | None = None
    paused: str | None = None


async def send_campaign(ctx: SendContext, *, now_all: bool = False, crew: Crew | None = None) -> SendReport:
    """Send everything of ``ctx.spec`` that is due now; return what happened.

    :param now_all: send every planned message now, ignoring optimized send times.
    :param crew: extra sending processes, already started (:meth:`Helpers.start`), released
        when the run is known and joined before returning (see the module doc).
    """
    try:
        with fewer_collections():
            report = _plan_or_resume(ctx, now_all)
            if crew is not None:
                crew.release(report.run_id)
            await pump_run(ctx, report)
    finally:
        failures = await asyncio.to_thread(crew.join) if crew is not None else []
    report.errors.extend(failures)
    with ctx.store.session() as session:
        if report.paused is not None:
            outbox.pause_run(session, report.run_id, ctx.clock(), report.paused)
        else:
            outbox.finish_run_if_done(session, report.run_id, ctx.clock())
        report.states = outbox.state_counts(session, report.run_id)
        report.deferred = report.states.get(MessageState.PLANNED, 0)
        report.next_at = outbox.next_send_at(session, report.run_id)
    return report


def _plan_or_resume(ctx: SendContext, now_all: bool) -> SendReport:
    """Resume the campaign's unfinished run (after the crash rule), or plan a new one."""
    now = ctx.clock()
    with ctx.store.session() as session:
        run = outbox.unfinished_run(session, ctx.spec.name)
        recovery = outbox.recover_run(session, run.id, now) if run is not None and run.id is not None else None
        was_paused = outbox.resume_run(session, run.id) if run is not None and run.id is not None else None
    if run is not None and run.id is not None:
        report = SendReport(run.id, resumed=True, planned={}, review=recovery.review if recovery else [],
                            released=recovery.released if recovery else 0, resumed_from_pause=was_paused)
    else:
        planned = plan_run(ctx.store, ctx.spec, now, rng=ctx.policy.rng)
        report = SendReport(planned.run_id, resumed=False, planned=planned.counts)
    if now_all:
        with ctx.store.session() as session:
            session.execute(sa.update(Message).where(col(Message.run_id) == report.run_id,
                                                     col(Message.state) == MessageState.PLANNED,
                                                     col(Message.send_at) > now).values(send_at=now))
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
                report.bounced += outcome.bounced
                report.in_flight_review.extend(outcome.review)
                if outcome.paused:
                    report.paused = outcome.pause_reason or "too many consecutive server failures"
                    return
                continue
            with ctx.store.session() as session:
                retry_at = outbox.next_retry_at(session, report.run_id)
            if retry_at is None:
                return
            await asyncio.sleep(max(0.0, (retry_at - ctx.clock()).total_seconds()))
    finally:
        await ctx.transport.close()
        if ctx.push is not None:
            await ctx.push.close()


def build_context(settings: Settings, store: Store, spec: CampaignSpec, rng: np.random.Generator,
                  clock: Callable[[], datetime], worker: str = "kairos", senders: int = 1) -> SendContext:
    """The pump's context from settings: policy, templates, the email composer, and the configured
    transports inside the sending policies (the campaign's ``[limits]`` can only lower the
    configured rates).

    :raises ConfigError: when the tracking secret is not set, or the DKIM key cannot be used.
    :raises RenderError: when a variant's template does not compile (syntax, or refused by the sandbox).
    """
    templates = TemplateSet(settings.paths.templates)
    composer = EmailComposer.from_settings(settings, spec, templates)
    for variant in spec.variants:  # a template that cannot compile is bad input: refuse before planning
        templates.compile(spec, variant)
    sending = settings.sending
    limits = Limits(sending.rate_limit, sending.domain_rate_limit, sending.domain_concurrency).tightest(
        Limits(spec.limits.rate, spec.limits.domain_rate))
    backoff = Backoff(sending.retry_backoff, sending.retry_backoff_max)
    jitter = np.random.default_rng(rng.integers(2**63))

    def policies(transport: Any) -> Any:
        return with_policies(transport, limits, attempts=sending.retry_attempts, backoff=backoff,
                             pause_after=sending.pause_after, rng=jitter)

    push = push_transport(settings) if "push" in spec.channels else None
    return SendContext(
        store=store, spec=spec, policy=Policy(spec, rng), templates=templates,
        transport=policies(email_transport(settings.email, settings.paths)),
        from_address=settings.email.from_address, clock=clock, composer=composer, worker=worker,
        batch_size=sending.batch_size, senders=senders, push=policies(push) if push is not None else None,
        requeue=Requeue(sending.max_attempts, backoff, jitter),
        rules=SendRules(sending.quiet_hours, sending.daily_cap),
    )


@dataclass(frozen=True)
class Helpers:
    """``count`` extra processes pumping the same run, each with its own transports.

    :param seed: each helper's decisions draw from ``default_rng([seed, index])``.
    """

    count: int
    settings: Settings
    spec: CampaignSpec
    seed: int | None = None

    def start(self, store: Store) -> Crew:
        """Start the processes, outside any running event loop. They build their context while
        the run is planned, then wait for :meth:`Crew.release` to name the run.

        :param store: the caller's store: its idle connections are closed first, so that none
            is shared with a forked process (the caller's next session opens a new one).
        """
        forking = "fork" in multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork") if forking else multiprocessing.get_context("spawn")
        if forking:
            store.dispose()
        runs = context.SimpleQueue()
        processes: list[multiprocessing.process.BaseProcess] = [
            context.Process(target=_helper_main, name=f"kairos-sender-{index}", daemon=True,
                            args=(self.settings, self.spec, runs, self.seed, index, self.count + 1, os.getpid()))
            for index in range(1, self.count + 1)]
        for process in processes:
            process.start()
        return Crew(processes, runs)


@dataclass
class Crew:
    """Started helper processes and the queue that tells them which run to pump."""

    processes: list[multiprocessing.process.BaseProcess]
    runs: Any
    released: bool = False

    def release(self, run_id: int | None) -> None:
        """Have every helper pump ``run_id``, or exit at once when None (planning failed)."""
        if not self.released:
            self.released = True
            for _process in self.processes:
                self.runs.put(run_id)

    def join(self) -> list[str]:
        """Wait for the helpers (releasing them to exit if nothing did); what went wrong with any."""
        self.release(None)
        failures = []
        for process in self.processes:
            process.join()
            if process.exitcode != 0:
                failures.append(f"sending process {process.name} exited with code {process.exitcode}")
        return failures


def _die_with(parent: int, name: str) -> None:
    """Have the kernel kill this process when ``parent`` dies (Linux), so a sender killed with
    -9 takes its helpers with it: one crash, one rule, no orphan still sending behind a resume.
    The process is also named ``name`` (``ps -o comm``: a forked helper has its parent's command line)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        libc.prctl(15, name.encode()[:15])  # PR_SET_NAME
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _helper_main(settings: Settings, spec: CampaignSpec, runs: Any, seed: int | None, index: int, senders: int,
                 parent: int) -> None:
    """A helper process: get ready, wait for the run's id, pump it until nothing is due."""
    _die_with(parent, f"kairos-sender-{index}")
    store = Store.open(settings.database_url, create=False)
    rng = np.random.default_rng([seed, index] if seed is not None else None)
    ctx = build_context(settings, store, spec, rng, lambda: datetime.now(UTC),
                        worker=f"{socket.gethostname()}:{os.getpid()}", senders=senders)
    try:
        run_id = runs.get()
        if run_id is not None:
            with fewer_collections():
                asyncio.run(pump_run(ctx, SendReport(run_id, resumed=True, planned={})))
    finally:
        store.dispose()
