"""What the HTTP push transports share: clients, Retry-After, and connection failures as errors."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from engine.errors import PushError


def http_client(*, http2: bool, ca_file: Path | None, timeout: float = 30.0, connections: int = 100
                ) -> httpx.AsyncClient:
    """An async client with a connection pool; ``ca_file`` adds a CA to trust (tests, private CAs)."""
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    return httpx.AsyncClient(http2=http2, verify=verify, timeout=timeout,
                             limits=httpx.Limits(max_connections=connections,
                                                 max_keepalive_connections=connections))


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if there is one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def connection_failure(provider: str, where: str, error: httpx.HTTPError) -> PushError:
    """A request that got no answer: the provider's (or the network's) failure, worth retrying."""
    return PushError(provider, f"no answer from {where}: {type(error).__name__}: {error}", server=True)
