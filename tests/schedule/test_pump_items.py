"""The pump reads the content pool again once the item table in hand is ITEM_TABLE_REFRESH old,
or ten times as long as reading it took."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine.schedule.pump import ITEM_TABLE_REFRESH, SendContext

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class CountingPolicy:
    """Stands in for the policy: each read of the pool returns a new table, named by its time."""

    def __init__(self) -> None:
        self.reads: list[datetime] = []

    def item_table(self, session: Any, now: datetime) -> str:
        self.reads.append(now)
        return f"table at {now:%H:%M:%S}"


def context(policy: CountingPolicy, read_seconds: float = 0.0) -> SendContext:
    """A context whose every read of the table takes ``read_seconds`` by its timer."""
    unused: Any = None
    ticks = iter(range(1000))
    return SendContext(store=unused, spec=unused, policy=policy, templates=unused,
                       transport=unused, from_address="news@example.test", clock=lambda: NOW, composer=unused,
                       timer=lambda: next(ticks) * read_seconds)


def test_batches_inside_the_refresh_interval_share_one_table() -> None:
    policy = CountingPolicy()
    ctx = context(policy)
    first = ctx.items_at(None, NOW)
    assert ctx.items_at(None, NOW + ITEM_TABLE_REFRESH - timedelta(milliseconds=1)) == first
    assert policy.reads == [NOW]


def test_the_pool_is_read_again_once_the_table_is_old_or_the_clock_went_back() -> None:
    policy = CountingPolicy()
    ctx = context(policy)
    ctx.items_at(None, NOW)
    later = NOW + ITEM_TABLE_REFRESH
    assert ctx.items_at(None, later) == f"table at {later:%H:%M:%S}"
    earlier = NOW - timedelta(seconds=1)
    ctx.items_at(None, earlier)
    assert policy.reads == [NOW, later, earlier]


def test_a_slow_read_is_repeated_less_often() -> None:
    policy = CountingPolicy()
    ctx = context(policy, read_seconds=3.0)  # ten times 3 s: read again after 30 s, not 10
    ctx.items_at(None, NOW)
    ctx.items_at(None, NOW + timedelta(seconds=29))
    assert policy.reads == [NOW]
    ctx.items_at(None, NOW + timedelta(seconds=30))
    assert policy.reads == [NOW, NOW + timedelta(seconds=30)]
