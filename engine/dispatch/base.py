"""The transport interface. One implementation per module; limits and retries wrap them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Envelope:
    """What a transport hands over: SMTP envelope addresses and the message bytes.

    :param key: the outbox row this envelope belongs to (for results and logs).
    """

    key: int
    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class Delivery:
    """The server's answer to an accepted message."""

    key: int
    response: str


class Transport(ABC):
    """Hands messages to a server. ``send`` raises DispatchError (``permanent`` set for 5xx)."""

    name: str

    @abstractmethod
    async def send(self, envelope: Envelope) -> Delivery:
        """Deliver one envelope or raise DispatchError."""

    async def close(self) -> None:
        """Release connections. Safe to call twice."""
