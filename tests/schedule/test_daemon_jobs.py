"""The leader's jobs: one per scheduled campaign in the database job store, and retraining."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlmodel import select

from engine.config import DaemonSettings, PathSettings, Settings
from engine.schedule.daemon import JOBS_TABLE, Daemon
from engine.sim import make_catalog, make_population, seed_store, simulate_history
from engine.store import ModelVersion, Store
from tests.conftest import TEST_SECRET, Project


def test_leader_keeps_one_job_per_schedule_and_retrains(project: Project, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    rng = np.random.default_rng(4)
    population = make_population(400, rng)
    catalog = make_catalog("news", 24, now, rng)
    store: Store = project.store()
    seed_store(store, population, [catalog], simulate_history(population, catalog, weeks=3, items_per_message=3,
                                                              now=now, rng=rng), now)
    digest = project.write("campaigns/digest.toml", """
        [campaign]
        name = "digest"
        goal = "click"
        [schedule]
        cron = "0 9 * * MON"
        [content]
        pool = "news"
        items = 3
        [[variants]]
        name = "a"
        subject = "Hi"
        template = "digest"
    """)
    project.write("campaigns/welcome.toml", digest.read_text().replace('"digest"\n', '"welcome"\n', 1)
                  .replace('cron = "0 9 * * MON"', 'trigger = { event = "signup" }'))
    settings = dataclasses.replace(
        Settings.load(project.config, environ={"KAIROS_SECRET": TEST_SECRET}),
        paths=PathSettings(campaigns=project.path / "campaigns", templates=project.path / "templates"),
        daemon=DaemonSettings(retrain_every=DaemonSettings.retrain_every))

    async def lead_once() -> None:
        daemon = Daemon(settings, store, worker="test", seed=1)
        await daemon.reload()
        daemon.leading = True
        daemon._start_scheduler()
        assert daemon.scheduler is not None
        jobs = {job.id: job for job in daemon.scheduler.get_jobs()}
        assert set(jobs) == {"campaign:digest", "retrain"}  # the triggered campaign has no clock
        first_fire = jobs["campaign:digest"].next_run_time
        daemon._sync_jobs()  # unchanged triggers are left alone: a missed firing is not moved
        assert daemon.scheduler.get_job("campaign:digest").next_run_time == first_fire
        await daemon.retrain()
        daemon.scheduler.shutdown(wait=False)
        for ctx in daemon.contexts.values():
            await ctx.transport.close()

    asyncio.run(lead_once())
    with store.session() as session:
        stored = session.execute(sa.text(f"SELECT id FROM {JOBS_TABLE}")).scalars().all()
        rankers = session.exec(select(ModelVersion).where(ModelVersion.campaign == "digest")).all()
    assert set(stored) == {"campaign:digest", "retrain"}  # persisted in the Kairos database
    assert len(rankers) == 1 and rankers[0].promoted
