"""The transport interface. One implementation per module; limits and retries wrap them.

A transport hands one *envelope* to one provider: an :class:`Envelope` (SMTP addresses and the
message bytes) or a :class:`PushEnvelope` (a device and a notification). It answers with a
:class:`Delivery` or raises :class:`~engine.errors.DispatchError` saying whether the failure is
permanent, the server's, and how long the server asked to wait. Policies that are not about the
protocol (rate limits, retries, pausing after repeated server failures) are transports too, each
wrapping another (:mod:`engine.dispatch.limits`, :mod:`~engine.dispatch.retry`,
:mod:`~engine.dispatch.breaker`), so each can be read, configured and tested alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar


@dataclass(frozen=True)
class Envelope:
    """What an email transport hands over: SMTP envelope addresses and the message bytes.

    :param key: the outbox row this envelope belongs to (for results and logs).
    :param crlf: every line end of ``data`` is already CRLF (what the composer writes), so the
        transport need not scan the message for others.
    """

    key: int
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    crlf: bool = False

    @property
    def route(self) -> str:
        """The destination domain: what per-domain limits are counted by."""
        return self.recipients[0].rpartition("@")[2].lower() if self.recipients else ""


@dataclass(frozen=True)
class PushNotification:
    """A rendered push notification, the same for every device of a recipient.

    :param data: string key/value pairs delivered to the app (FCM ``data``, APNs custom keys).
    :param ttl: seconds the provider may hold it for an offline device (APNs ``apns-expiration``,
        FCM ``ttl``, Web Push ``TTL``).
    :param priority: ``high`` (show now) or ``normal`` (may be batched to save battery).
    """

    title: str
    body: str
    url: str | None = None
    data: tuple[tuple[str, str], ...] = ()
    ttl: int = 86_400
    priority: str = "high"
    collapse_key: str | None = None


@dataclass(frozen=True)
class PushEnvelope:
    """One notification for one device (``platform`` is ``fcm``, ``apns`` or ``webpush``).

    For Web Push ``token`` is the subscription JSON (endpoint and keys).
    """

    key: int
    device_id: int
    platform: str
    token: str
    notification: PushNotification = field(compare=False)

    @property
    def route(self) -> str:
        return self.platform


E = TypeVar("E", bound=Envelope | PushEnvelope)


@dataclass(frozen=True)
class Delivery:
    """The server's answer to an accepted message."""

    key: int
    response: str


class Transport(ABC, Generic[E]):
    """Hands envelopes to a provider. ``send`` raises DispatchError (``permanent`` set for 5xx)."""

    name: str

    @abstractmethod
    async def send(self, envelope: E) -> Delivery:
        """Deliver one envelope or raise DispatchError."""

    async def close(self) -> None:
        """Release connections. Safe to call twice."""


class Wrapper(Transport[E]):
    """A policy around another transport: by default every call goes straight through."""

    def __init__(self, inner: Transport[E]) -> None:
        self.inner: Transport[E] = inner
        self.name = inner.name

    async def send(self, envelope: E) -> Delivery:
        return await self.inner.send(envelope)

    async def close(self) -> None:
        await self.inner.close()
