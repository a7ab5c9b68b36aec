"""``kairos daemon``: everything that runs unattended, in one asyncio process per worker.

Every daemon process pumps due messages of the loaded campaigns (claims are disjoint: SQLite's
write lock, PostgreSQL's ``FOR UPDATE SKIP LOCKED``). One of them - the leader, see
:mod:`engine.schedule.leader` - also fires schedules (APScheduler 3 with its SQLAlchemy job
store in the Kairos database), plans runs for triggering events, applies the crash rule to
claims older than ``daemon.lease``, finishes runs, retrains rankers and rebuilds personas on
their schedules. When the leader dies another process takes the lock and these duties over;
every firing is planned under an idempotency key, so a firing is planned once whoever fires it.

Campaign and template files are watched: a change is loaded; an invalid change is logged and the
last valid version keeps running. On SIGTERM (or SIGINT) the batch in flight is finished and
committed, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import uvicorn
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from watchfiles import awatch

from engine.audience.personas import rebuild_if_due
from engine.config import Settings
from engine.errors import KairosError
from engine.learn.training import train_campaign
from engine.schedule.leader import Leadership, leadership_for
from engine.schedule.planning import TriggeringEvent, plan_run, plan_triggered
from engine.schedule.pump import BatchOutcome, SendContext, send_batch
from engine.schedule.registry import CampaignRegistry
from engine.schedule.send import build_context
from engine.schedule.triggers import MISFIRE_GRACE, nominal_fire_time, run_key, schedule_trigger, wall_clock
from engine.spec.model import CampaignSpec
from engine.store import Store, outbox

log = logging.getLogger("kairos.daemon")
PAUSE_REST = timedelta(seconds=60)
JOBS_TABLE = "kairos_scheduled_jobs"

# APScheduler's persistent jobs must name importable functions; they reach the process's daemon here.
_process: dict[str, Daemon] = {}


async def fire_campaign(name: str) -> None:
    """The job of a campaign's schedule: plan the run its firing stands for."""
    daemon = _process.get("daemon")
    if daemon is not None:
        await daemon.fire(name)


async def retrain_models() -> None:
    """The periodic job that retrains every loaded campaign's ranker and rebuilds personas if due."""
    daemon = _process.get("daemon")
    if daemon is not None:
        await daemon.retrain()


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a loop that owns SIGTERM itself (the daemon's, the demo's)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    """One daemon process.

    :param worker: this process's name in claims (``claimed_by``).
    :param app: an ASGI app to serve in the same loop (the tracking server), at ``listen``.
    """

    def __init__(self, settings: Settings, store: Store, *, worker: str, app: Any = None,
                 listen: tuple[str, int] = ("127.0.0.1", 8025), seed: int | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 leadership: Leadership | None = None) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.app = app
        self.listen = listen
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.registry = CampaignRegistry(settings.paths.campaigns, settings.paths.templates)
        self.leadership = leadership or leadership_for(store)
        self.leading = False
        self.contexts: dict[str, SendContext] = {}
        self.resting: dict[str, datetime] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: finishing the batch in flight")
            self.stopping.set()

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT; return after a clean shutdown."""
        _process["daemon"] = self
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        await self.reload()
        tasks = [asyncio.create_task(self._pump_loop(), name="pump"),
                 asyncio.create_task(self._leader_loop(), name="leader"),
                 asyncio.create_task(self._watch_loop(), name="watch")]
        server = None
        if self.app is not None:
            host, port = self.listen
            server = EmbeddedServer(uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                                    access_log=False, lifespan="off"))
            tasks.append(asyncio.create_task(server.serve(), name="tracking"))
            log.info("tracking server on http://%s:%d", host, port)
        log.info("daemon %s started with %d campaign(s)", self.worker, len(self.registry.specs))
        try:
            await self.stopping.wait()
            if server is not None:
                server.should_exit = True
            await asyncio.gather(*tasks)
        finally:
            if self.scheduler is not None and self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            self.leadership.release()
            for ctx in self.contexts.values():
                await _close(ctx)
            _process.pop("daemon", None)
        log.info("daemon %s stopped cleanly", self.worker)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # --- campaigns and their files ------------------------------------------------------------

    async def reload(self) -> None:
        """Re-read campaign files and rebuild what depends on them (contexts, schedules)."""
        result = self.registry.reload()
        for error in result.refused:
            log.error("refused a campaign change (the last valid version keeps running): %s", error)
        for name in result.removed:
            log.info("campaign %s removed", name)
            old = self.contexts.pop(name, None)
            if old is not None:
                await _close(old)
        for spec in result.changed:
            log.info("loaded campaign %s (%s)", spec.name, spec.source)
        # Templates may have changed too: rebuild every context, keeping the old one if the new fails.
        for spec in list(self.registry.specs.values()):
            await self._rebuild_context(spec)
        if self.leading:
            self._sync_jobs()

    async def _rebuild_context(self, spec: CampaignSpec) -> None:
        try:
            fresh = build_context(self.settings, self.store, spec, self.rng, self.clock, worker=self.worker)
        except KairosError as exc:
            log.error("campaign %s: %s (the last valid version keeps running)", spec.name, exc)
            return
        old = self.contexts.get(spec.name)
        self.contexts[spec.name] = fresh
        if old is not None:
            await _close(old)

    async def _watch_loop(self) -> None:
        watched = [p for p in (self.settings.paths.campaigns, self.settings.paths.templates) if p.is_dir()]
        if not watched:
            await self.stopping.wait()
            return
        async for _changes in awatch(*watched, stop_event=self.stopping, debounce=300, step=50):
            await self.reload()

    # --- sending ------------------------------------------------------------------------------

    async def _pump_loop(self) -> None:
        while not self.stopping.is_set():
            busy = False
            for name, ctx in list(self.contexts.items()):
                if self.stopping.is_set():
                    break
                if self.resting.get(name, datetime.min.replace(tzinfo=UTC)) > self.clock():
                    continue
                try:
                    outcome = await send_batch(ctx)
                except KairosError as exc:
                    log.error("campaign %s: %s", name, exc)
                    continue
                if outcome is None:
                    continue
                busy = True
                self._report(name, outcome)
                if outcome.paused:
                    await self._rest(name, outcome.pause_reason or "server failures")
            if not busy:
                await self._sleep(self.settings.daemon.poll_interval)

    def _report(self, name: str, outcome: BatchOutcome) -> None:
        log.info("campaign %s: sent %d, failed %d, refused %d, retrying %d, suppressed %d, deferred %d, "
                 "capped %d%s", name, outcome.sent, outcome.failed, outcome.refused, outcome.retrying,
                 outcome.suppressed, outcome.deferred, outcome.capped,
                 f", in review {outcome.review}" if outcome.review else "")
        for error in dict.fromkeys(outcome.errors):
            log.warning("campaign %s: %s", name, error)

    async def _rest(self, name: str, reason: str) -> None:
        """The campaign's transport paused after repeated server failures: try again later."""
        until = self.clock() + PAUSE_REST
        self.resting[name] = until
        log.error("campaign %s paused until %s: %s", name, until.isoformat(timespec="seconds"), reason)
        spec = self.registry.specs.get(name)
        if spec is not None:
            await self._rebuild_context(spec)  # a fresh transport, its breaker closed

    # --- leadership and its duties ------------------------------------------------------------

    async def _leader_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                leading = await asyncio.to_thread(self.leadership.try_acquire)
            except KairosError as exc:
                log.error("leadership: %s", exc)
                leading = False
            if leading and not self.leading:
                self.leading = True
                log.info("daemon %s is leading: it fires schedules and retrains", self.worker)
                self._start_scheduler()
            elif not leading and self.leading:
                self.leading = False
                log.warning("daemon %s lost the leadership", self.worker)
                if self.scheduler is not None and self.scheduler.running:
                    self.scheduler.shutdown(wait=False)
                self.scheduler = None
            if self.leading:
                try:
                    await asyncio.to_thread(self._leader_duties)
                except KairosError as exc:
                    log.error("%s", exc)
            await self._sleep(self.settings.daemon.poll_interval)

    def _start_scheduler(self) -> None:
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOBS_TABLE)},
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                        "misfire_grace_time": int(MISFIRE_GRACE.total_seconds())})
        self.scheduler.start()
        self._sync_jobs()

    def _sync_jobs(self) -> None:
        """Make the stored jobs match the loaded campaigns, without moving a job whose trigger is
        unchanged (so a firing missed while no leader ran is still fired, once)."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        wanted: dict[str, tuple[str, Any, list[str]]] = {}
        for spec in self.registry.specs.values():
            trigger = schedule_trigger(spec.schedule)
            if trigger is not None:
                wanted[f"campaign:{spec.name}"] = ("engine.schedule.daemon:fire_campaign", trigger, [spec.name])
        retrain = IntervalTrigger(seconds=int(self.settings.daemon.retrain_every.total_seconds()), timezone=UTC)
        wanted["retrain"] = ("engine.schedule.daemon:retrain_models", retrain, [])
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                scheduler.remove_job(job.id)
        for job_id, (function, trigger, args) in wanted.items():
            current = scheduler.get_job(job_id)
            if current is None or str(current.trigger) != str(trigger):
                scheduler.add_job(function, trigger, args=args, id=job_id, replace_existing=True)

    def _leader_duties(self) -> None:
        now = self.clock()
        with self.store.session() as session:
            recovery = outbox.recover_stale(session, now, self.settings.daemon.lease)
            finished = outbox.finish_done_runs(session, now)
        if recovery.released or recovery.review:
            log.warning("crash rule: %d claimed message(s) returned to the queue; %d in flight marked review %s",
                        recovery.released, len(recovery.review), recovery.review[:20])
        if finished:
            log.info("run(s) finished: %s", finished)
        for spec in list(self.registry.specs.values()):
            if spec.schedule.trigger is not None:
                self._plan_triggered(spec, now)

    def _plan_triggered(self, spec: CampaignSpec, now: datetime) -> None:
        trigger = spec.schedule.trigger
        assert trigger is not None
        with self.store.session() as session:
            rows = outbox.triggering_events(session, spec.name, trigger.event,
                                            now - self.settings.daemon.trigger_lookback)
        if not rows:
            return
        events = [TriggeringEvent(*row) for row in rows]
        try:
            counts = plan_triggered(self.store, spec, events, now, self.rng)
        except KairosError as exc:
            log.error("campaign %s: %s", spec.name, exc)
            return
        log.info("campaign %s: %d %s event(s) planned: %s", spec.name, len(events), trigger.event, counts)

    async def fire(self, name: str) -> None:
        """Plan the run a schedule's firing stands for (idempotent on its nominal instant)."""
        spec = self.registry.specs.get(name)
        trigger = schedule_trigger(spec.schedule) if spec is not None else None
        if spec is None or trigger is None:
            return
        now = self.clock()
        fired = nominal_fire_time(trigger, now) or now
        try:
            planned = await asyncio.to_thread(plan_run, self.store, spec, now, "schedule", self.rng,
                                              key=run_key(spec.schedule, fired),
                                              wall_clock=wall_clock(spec.schedule, fired))
        except KairosError as exc:
            log.error("campaign %s: firing of %s not planned: %s", name, fired.isoformat(), exc)
            return
        if planned.created:
            log.info("campaign %s fired (%s): run %d planned: %s", name, fired.isoformat(), planned.run_id,
                     planned.counts)

    async def retrain(self) -> None:
        now = self.clock()
        for spec in list(self.registry.specs.values()):
            try:
                report = await asyncio.to_thread(train_campaign, self.store, spec, now, self.rng)
            except KairosError as exc:
                log.warning("campaign %s: not retrained: %s", spec.name, exc)
                continue
            log.info("campaign %s: ranker retrained (%s)", spec.name, "promoted" if report.promoted else "kept")
        segments = self.settings.segments
        try:
            with self.store.session() as session:
                version = rebuild_if_due(session, now, segments.rebuild_every, self.rng, min_size=segments.min_size,
                                         k_range=range(segments.k_min, segments.k_max + 1))
        except (KairosError, ValueError) as exc:
            log.warning("personas not rebuilt: %s", exc)
            return
        if version is not None:
            log.info("personas rebuilt: version %d", version)


async def _close(ctx: SendContext) -> None:
    await ctx.transport.close()
    if ctx.push is not None:
        await ctx.push.close()
