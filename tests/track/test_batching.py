"""Group commit: concurrent submissions share writes, each gets its own results, errors reach all."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from engine.track.batching import BatchWriter


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.fail = fail

    def write(self, rows: list[dict[str, Any]]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("disk full")
        self.batches.append([row["n"] for row in rows])
        return [row["n"] * 10 for row in rows]


@pytest.mark.parametrize("in_thread", [False, True])
def test_concurrent_submissions_share_writes_and_get_their_own_results(in_thread: bool) -> None:
    recorder = Recorder()

    async def main() -> list[list[int]]:
        writer = BatchWriter(recorder.write, in_thread=in_thread)
        return await asyncio.gather(*(writer.submit([{"n": n}, {"n": n + 100}]) for n in range(50)))

    results = asyncio.run(main())
    assert results == [[n * 10, (n + 100) * 10] for n in range(50)]
    assert sorted(n for batch in recorder.batches for n in batch) == sorted([*range(50), *range(100, 150)])
    assert len(recorder.batches) < 50  # grouped: far fewer writes than submissions
    on_loop = recorder.threads == {threading.main_thread().name}
    assert on_loop is not in_thread


@pytest.mark.parametrize("in_thread", [False, True])
def test_a_failed_write_fails_every_request_in_it_and_the_writer_goes_on(in_thread: bool) -> None:
    recorder = Recorder(fail=True)

    async def main() -> tuple[list[Any], list[int]]:
        writer = BatchWriter(recorder.write, in_thread=in_thread)
        failed = await asyncio.gather(*(writer.submit([{"n": n}]) for n in range(5)), return_exceptions=True)
        recorder.fail = False
        return failed, await writer.submit([{"n": 7}])

    failed, after = asyncio.run(main())
    assert all(isinstance(f, RuntimeError) and str(f) == "disk full" for f in failed)
    assert after == [70]
