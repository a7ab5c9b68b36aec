"""Several senders split the end of a run into shrinking batches, so that they finish together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from engine.schedule.pump import TAIL_BATCH, batch_limit
from engine.store import MessageState, Store, outbox

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def plan(store: Store, due: int, later: int = 0) -> None:
    with store.session() as session:
        run = outbox.start_run(session, "c", "hash", "manual", NOW)
        assert run.id is not None
        outbox.insert_messages(session, [
            {"run_id": run.id, "campaign": "c", "recipient_id": f"r{i:05d}", "state": MessageState.PLANNED,
             "send_at": NOW - timedelta(seconds=1) if i < due else NOW + timedelta(hours=1), "attempts": 0,
             "updated_at": NOW}
            for i in range(due + later)])


def limit(store: Store, senders: int, batch_size: int = 1000) -> int:
    with store.session() as session:
        return batch_limit(session, SimpleNamespace(senders=senders, batch_size=batch_size), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(("due", "expected"), [(9000, 1000), (4000, 1000), (1000, 250), (300, 75), (120, TAIL_BATCH)])
def test_two_senders_claim_a_quarter_of_what_is_due_near_the_end(store: Store, due: int, expected: int) -> None:
    plan(store, due, later=500)  # not due yet: not counted
    assert limit(store, senders=2) == expected
    assert limit(store, senders=1) == 1000  # one sender has nobody to wait for


def test_claimed_messages_are_no_longer_due(store: Store) -> None:
    plan(store, 2000)
    with store.session() as session:
        outbox.claim_due_messages(session, NOW, 1600, "w1")
    assert limit(store, senders=2) == 100
    with store.session() as session:
        assert outbox.due_count(session, NOW, cap=10_000) == 400
        assert outbox.due_count(session, NOW, cap=150) == 150
