"""Dispatch: transports behind one interface, and the policies that wrap them.

:func:`email_transport` and :func:`push_transport` build the bare protocol transports from
settings; :func:`with_policies` wraps one in the sending policies, outermost first: retries of
temporary failures, the circuit breaker that pauses a run, then the rate limits - so every
attempt, retried or not, is counted by the breaker and waits for its token.
"""

from __future__ import annotations

import numpy as np

from engine.config import EmailSettings, PathSettings, Settings
from engine.dispatch.base import Delivery, E, Envelope, PushEnvelope, PushNotification, Transport
from engine.dispatch.breaker import CircuitBreaker
from engine.dispatch.inbox import InboxServer, InboxTransport
from engine.dispatch.limits import Limits, RateLimited
from engine.dispatch.retry import Backoff, Retrying
from engine.dispatch.route import PlatformRouter
from engine.dispatch.smtp import SmtpTransport


def email_transport(email: EmailSettings, paths: PathSettings) -> Transport[Envelope]:
    """The transport ``[email] transport`` names: an SMTP server, or the local inbox."""
    if email.transport == "inbox":
        return InboxTransport(paths.inbox, max_connections=min(email.max_connections, 8))
    return SmtpTransport(email.host, email.port, max_connections=email.max_connections, starttls=email.starttls,
                         tls=email.tls, username=email.username, password=email.password, timeout=email.timeout,
                         ca_file=email.ca_file, pipelining=email.pipelining)


def push_transport(settings: Settings) -> Transport[PushEnvelope] | None:
    """A router over the configured push providers (``[push.fcm]``, ``[push.apns]``,
    ``[push.webpush]``), or None when none is configured."""
    providers: dict[str, Transport[PushEnvelope]] = {}
    if settings.fcm is not None:
        from engine.dispatch.fcm import FcmTransport
        providers["fcm"] = FcmTransport.from_settings(settings.fcm)
    if settings.apns is not None:
        from engine.dispatch.apns import ApnsTransport
        providers["apns"] = ApnsTransport.from_settings(settings.apns)
    if settings.webpush is not None:
        from engine.dispatch.webpush import WebPushTransport
        providers["webpush"] = WebPushTransport.from_settings(settings.webpush)
    return PlatformRouter(providers) if providers else None


def with_policies(transport: Transport[E], limits: Limits, *, attempts: int, backoff: Backoff,
                  pause_after: int, rng: np.random.Generator) -> Transport[E]:
    """``transport`` inside retries, the circuit breaker and the rate limits (see the module doc)."""
    limited: Transport[E] = transport if limits.unlimited else RateLimited(transport, limits)
    return Retrying(CircuitBreaker(limited, pause_after), attempts=attempts, backoff=backoff, rng=rng)


__all__ = ["Backoff", "Delivery", "Envelope", "InboxServer", "InboxTransport", "Limits", "PushEnvelope",
           "PushNotification", "SmtpTransport", "Transport", "email_transport", "push_transport", "with_policies"]
