"""A sending batch leaves no statement behind for the cyclic garbage collector.

The pump runs the collector seldom while sending (``pump.COLLECTOR_THRESHOLDS``). That keeps
the peak memory flat only while batches make no cyclic garbage: a query built per batch with an
``IN`` list is a cycle of SQLAlchemy objects holding the batch's ids until the collector runs.
The batch's queries are built once, with expanding parameters.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

import numpy as np
import pytest

from engine.config import Settings
from engine.schedule.planning import plan_run
from engine.schedule.pump import BatchOutcome, send_batch
from engine.schedule.send import build_context
from engine.spec import load_campaign
from tests.conftest import TEST_SECRET, Project
from tests.schedule.test_send_smtp import seed_project


def test_a_sending_batch_leaves_no_statement_garbage(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_project(project)
    monkeypatch.chdir(project.path)
    settings = Settings.load(project.config, {"KAIROS_SECRET": TEST_SECRET})
    spec = load_campaign(project.path / "campaigns" / "news.toml", settings.paths.templates)
    store = project.store()
    now = datetime.now(UTC)
    ctx = build_context(settings, store, spec, np.random.default_rng(1), lambda: datetime.now(UTC))
    ctx.batch_size = 3
    run = plan_run(store, spec, now, rng=np.random.default_rng(1))

    async def two_batches() -> tuple[BatchOutcome | None, BatchOutcome | None, list[str]]:
        first = await send_batch(ctx, run.run_id)  # opens the connections, compiles the statements
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            second = await send_batch(ctx, run.run_id)
            gc.collect()
            left = sorted({type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("sqlalchemy")})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            await ctx.transport.close()
        return first, second, left

    first, second, left = asyncio.run(two_batches())
    assert first is not None and first.sent == 3
    assert second is not None and second.sent == 3
    assert left == []
