"""Pause instead of burning the audience: stop sending after N consecutive server failures.

When the server (or the connection to it) fails ``threshold`` times in a row - refused
connections, 421s, drops, timeouts, HTTP 5xx - every later send raises
:class:`~engine.errors.DispatchPaused` without touching the network. The pump puts those
messages back in the queue untouched and pauses the run; ``kairos send`` resumes it later. A
success, or any answer about one message (a recipient refused), shows the server is working and
resets the count.
"""

from __future__ import annotations

from engine.dispatch.base import Delivery, E, Transport, Wrapper
from engine.errors import DispatchError, DispatchPaused


class CircuitBreaker(Wrapper[E]):
    """Opens after ``threshold`` consecutive server failures of ``inner``; stays open until closed."""

    def __init__(self, inner: Transport[E], threshold: int) -> None:
        super().__init__(inner)
        self.threshold = threshold
        self.failures = 0
        self.last: str | None = None
        self.open = False

    async def send(self, envelope: E) -> Delivery:
        if self.open:
            raise DispatchPaused(self.name, self.failures, self.last or "")
        try:
            delivery = await self.inner.send(envelope)
        except DispatchPaused:
            raise
        except DispatchError as error:
            if error.server:
                self.failures += 1
                self.last = str(error)
                if self.failures >= self.threshold:
                    self.open = True
            else:
                self.failures = 0
            raise
        self.failures = 0
        return delivery
