"""Leadership: one leader at a time, and a successor when it dies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.schedule.leader import AdvisoryLockLeadership, LockFileLeadership, leadership_for
from engine.store import Store
from tests.conftest import ROOT


def test_postgres_advisory_lock_has_one_holder_and_passes_on(postgres_url: str) -> None:
    stores = [Store.open(postgres_url) for _ in range(3)]
    candidates = [AdvisoryLockLeadership(store, name="test-leader") for store in stores]
    try:
        assert [c.try_acquire() for c in candidates] == [True, False, False]
        assert candidates[0].try_acquire()  # still leading
        candidates[0].release()
        assert [c.try_acquire() for c in candidates[1:]] == [True, False]
        assert not candidates[0].try_acquire()
    finally:
        for candidate, store in zip(candidates, stores, strict=True):
            candidate.release()
            store.dispose()


def test_postgres_leader_process_killed_releases_the_lock(postgres_url: str) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from engine.store import Store
        from engine.schedule.leader import AdvisoryLockLeadership
        leader = AdvisoryLockLeadership(Store.open({postgres_url!r}), name="test-kill")
        assert leader.try_acquire()
        print("leading", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    store = Store.open(postgres_url)
    follower = AdvisoryLockLeadership(store, name="test-kill")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "leading"
        assert not follower.try_acquire()
        child.kill()
        child.wait()
        # The server notices the dead connection and frees the lock; the follower's next try wins.
        deadline = time.monotonic() + 20
        while not follower.try_acquire():
            assert time.monotonic() < deadline, "the lock was never released"
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        follower.release()
        store.dispose()


def test_sqlite_has_one_daemon(tmp_path: Path) -> None:
    database = tmp_path / "k.db"
    store = Store.open(f"sqlite:///{database}")
    first = leadership_for(store)
    second = LockFileLeadership(database)
    assert isinstance(first, LockFileLeadership)
    assert first.try_acquire() and not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


@pytest.mark.parametrize("name", ["kairos-leader", "other"])
def test_advisory_keys_are_stable_64_bit(name: str) -> None:
    from engine.schedule.leader import advisory_key

    key = advisory_key(name)
    assert key == advisory_key(name) and -(2**63) <= key < 2**63
