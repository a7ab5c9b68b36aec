"""Group commit: many concurrent requests' writes in few transactions, with no added delay.

When no write is in progress, a request's rows are written at once. While one is, arriving rows
wait and all go together in the next write. So a lone request pays one transaction, and under
load one transaction carries the rows of every request that arrived during the previous one.
Each request awaits the write that holds its rows, so a 2xx answer means they are stored. The
write function returns one result per row (e.g. whether a click's message exists), handed back
to the request that submitted it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

Rows = list[dict[str, Any]]
Write = Callable[[Rows], Sequence[Any]]


class BatchWriter:
    """Hands rows to ``write``, one write at a time, batching what waits.

    :param write: stores a batch and returns one result per row.
    :param max_rows: the most rows one write takes; the rest go in the next.
    :param in_thread: run ``write`` in a worker thread, so the event loop serves requests while it
        waits (a database over the network). False runs it on the loop itself: an embedded
        SQLite write is CPU work in this process, and a thread would only add handoffs of the
        GIL — each step of SQLite releases and retakes it — which made writes several times
        slower under load.
    """

    def __init__(self, write: Write, *, max_rows: int = 2000, in_thread: bool = True) -> None:
        self.write = write
        self.max_rows = max_rows
        self.in_thread = in_thread
        self._waiting: list[tuple[Rows, asyncio.Future[list[Any]]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def submit(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Queue ``rows``; once written, their results (or raise what the write raised)."""
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(rows), done))
        if self._writing is None:
            self._writing = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if not self.in_thread:
                    # a turn of the loop first, so requests already received join this write
                    await asyncio.sleep(0)
                batch: list[tuple[Rows, asyncio.Future[list[Any]]]] = []
                size = 0
                while self._waiting and (not batch or size + len(self._waiting[0][0]) <= self.max_rows):
                    entry = self._waiting.pop(0)
                    batch.append(entry)
                    size += len(entry[0])
                await self._write(batch)
        finally:
            self._writing = None

    async def _write(self, batch: list[tuple[Rows, asyncio.Future[list[Any]]]]) -> None:
        rows = [row for entry_rows, _ in batch for row in entry_rows]
        try:
            results = list(await asyncio.to_thread(self.write, rows) if self.in_thread else self.write(rows))
        except Exception as exc:
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        start = 0
        for entry_rows, waiter in batch:
            if not waiter.done():
                waiter.set_result(results[start:start + len(entry_rows)])
            start += len(entry_rows)
