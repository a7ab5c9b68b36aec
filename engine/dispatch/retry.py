"""Retries of temporary failures, with exponential backoff and jitter, wrapped around a transport.

A temporary failure (4xx, 421, a dropped connection, HTTP 429/5xx) is tried again after
``backoff.delay(attempt)``, or after the server's Retry-After when it is longer, up to
``attempts`` tries in all. Permanent failures, ambiguous ones (the message may already have been
delivered) and a paused transport are raised at once. A wait longer than ``max_wait`` is not
slept here: the failure is raised so the outbox can re-queue the message for later instead of
holding a connection slot (:func:`engine.schedule.pump.send_batch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from engine.dispatch.base import Delivery, E, Transport, Wrapper
from engine.errors import DispatchError, DispatchPaused


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits between half and all of
    ``min(cap, base * 2 ** (n - 1))`` seconds, so retries of one outage spread out."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int, rng: np.random.Generator) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + float(rng.uniform(0.0, ceiling / 2))


def retryable(error: DispatchError) -> bool:
    return not (error.permanent or error.ambiguous or isinstance(error, DispatchPaused))


class Retrying(Wrapper[E]):
    """Tries each send up to ``attempts`` times.

    :param rng: draws the jitter (seed it for reproducible waits).
    :param max_wait: the longest single wait slept here, in seconds.
    """

    def __init__(self, inner: Transport[E], *, attempts: int, backoff: Backoff, rng: np.random.Generator,
                 max_wait: float = 30.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        super().__init__(inner)
        self.attempts = attempts
        self.backoff = backoff
        self.rng = rng
        self.max_wait = max_wait
        self.sleep = sleep
        self.retried = 0

    async def send(self, envelope: E) -> Delivery:
        attempt = 1
        while True:
            try:
                return await self.inner.send(envelope)
            except DispatchError as error:
                if not retryable(error) or attempt >= self.attempts:
                    raise
                wait = max(error.retry_after or 0.0, self.backoff.delay(attempt, self.rng))
                if wait > self.max_wait:
                    raise
            self.retried += 1
            attempt += 1
            await self.sleep(wait)
