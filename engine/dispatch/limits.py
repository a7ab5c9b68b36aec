"""Rate limits and per-destination concurrency, wrapped around any transport.

A :class:`TokenBucket` lets ``rate`` messages a second through with bursts of at most ``burst``;
:class:`RateLimited` holds each send until the global bucket, the bucket of its route (the
recipient's domain for email, the provider for push) and a concurrency slot for that route all
allow it. Time is injected (``clock`` and ``sleep``) so the arithmetic can be tested exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.dispatch.base import Delivery, E, Transport, Wrapper

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Sending limits; ``None`` is unlimited.

    :param rate: messages per second over all routes.
    :param route_rate: messages per second to any one route (destination domain or provider).
    :param route_concurrency: messages in flight at once to any one route.
    """

    rate: float | None = None
    route_rate: float | None = None
    route_concurrency: int | None = None

    def tightest(self, other: Limits) -> Limits:
        """The lower of each limit: a campaign may slow its run down, never speed past the config."""
        def low(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else min(a, b)

        concurrency = low(self.route_concurrency, other.route_concurrency)
        return Limits(low(self.rate, other.rate), low(self.route_rate, other.route_rate),
                      int(concurrency) if concurrency is not None else None)

    @property
    def unlimited(self) -> bool:
        return self.rate is None and self.route_rate is None and self.route_concurrency is None


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst`` (default: 1/20 s worth, at least 1).

    Waiters are served first come, first served.
    """

    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a positive rate")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 20)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._turn:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await self.sleep((1 - self.tokens) / self.rate)


class RateLimited(Wrapper[E]):
    """Applies :class:`Limits` to the sends of ``inner``."""

    def __init__(self, inner: Transport[E], limits: Limits, *, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(inner)
        self.limits = limits
        self.clock, self.sleep = clock, sleep
        self._global = TokenBucket(limits.rate, clock=clock, sleep=sleep) if limits.rate else None
        self._routes: dict[str, TokenBucket] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    def _route_bucket(self, route: str) -> TokenBucket | None:
        if not self.limits.route_rate:
            return None
        if route not in self._routes:
            self._routes[route] = TokenBucket(self.limits.route_rate, clock=self.clock, sleep=self.sleep)
        return self._routes[route]

    async def send(self, envelope: E) -> Delivery:
        if self.limits.route_concurrency is None:
            return await self._send(envelope)
        slot = self._slots.setdefault(envelope.route, asyncio.Semaphore(self.limits.route_concurrency))
        async with slot:
            return await self._send(envelope)

    async def _send(self, envelope: E) -> Delivery:
        if self._global is not None:
            await self._global.acquire()
        bucket = self._route_bucket(envelope.route)
        if bucket is not None:
            await bucket.acquire()
        return await self.inner.send(envelope)
