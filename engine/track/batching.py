"""Group writes from many concurrent requests into few transactions.

Each request awaits the flush that contains its rows, so a 2xx answer means the rows are
stored; under load, one transaction carries the rows of many requests. The write function
returns one result per row (e.g. whether a click's message exists), handed back to the request
that submitted it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

Rows = list[dict[str, Any]]
Write = Callable[[Rows], Sequence[Any]]


class BatchWriter:
    """Collects rows and hands them to ``write`` (run in a thread) in batches.

    :param write: stores a batch and returns one result per row; called from a worker thread,
        one batch at a time.
    :param max_rows: flush as soon as this many rows are waiting.
    :param max_delay: flush at the latest this many seconds after the first waiting row.
    """

    def __init__(self, write: Write, *, max_rows: int = 500, max_delay: float = 0.02) -> None:
        self.write = write
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._rows: Rows = []
        self._waiters: list[tuple[int, asyncio.Future[list[Any]]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    async def submit(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Queue ``rows``; once written, their results (or raise what the write raised)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        self._rows.extend(rows)
        self._waiters.append((len(rows), done))
        if len(self._rows) >= self.max_rows:
            self._schedule(loop, 0.0)
        elif self._timer is None:
            self._schedule(loop, self.max_delay)
        return await done

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(delay, lambda: loop.create_task(self.flush()))

    async def flush(self) -> None:
        """Write everything waiting now."""
        async with self._lock:
            self._timer = None
            rows, waiters = self._rows, self._waiters
            self._rows, self._waiters = [], []
            if not waiters:
                return
            try:
                results = list(await asyncio.to_thread(self.write, rows))
            except Exception as exc:
                for _, waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                return
            start = 0
            for count, waiter in waiters:
                if not waiter.done():
                    waiter.set_result(results[start:start + count])
                start += count
