"""Firebase Cloud Messaging, HTTP v1 API, with an OAuth2 service-account token.

Authentication (Google's server-to-server OAuth2 flow): a JWT signed RS256 with the service
account's private key (``iss`` its client_email, ``scope`` firebase.messaging, ``aud`` the
token URI) is exchanged at ``token_uri`` for an access token, which is cached and refreshed a
minute before it expires (or at once when FCM answers 401).

Errors, as FCM documents them: ``UNREGISTERED`` (404) and ``SENDER_ID_MISMATCH`` (403) mean the
token is gone - the device is deactivated; ``INVALID_ARGUMENT`` (400) fails the message with
FCM's reason; ``QUOTA_EXCEEDED`` (429), ``UNAVAILABLE`` (503) and ``INTERNAL`` (500) are
temporary and honour Retry-After. The endpoint and the token URI are configurable so tests can
point them at loopback stand-ins.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from engine.config import FcmSettings
from engine.dispatch.base import Delivery, PushEnvelope, Transport
from engine.dispatch.http import connection_failure, http_client, retry_after
from engine.errors import ConfigError, PushError

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TOKEN_LIFETIME = 3600
REFRESH_MARGIN = 60.0


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service-account key file that the JWT grant needs."""

    client_email: str
    private_key: str = field(repr=False)
    private_key_id: str
    token_uri: str

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(path, "push.fcm.credentials_file", f"cannot read it: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(path, None, f"not a JSON service-account key: {exc.msg}", line=exc.lineno) from None
        missing = [k for k in ("client_email", "private_key", "token_uri") if not isinstance(data.get(k), str)]
        if missing:
            raise ConfigError(path, missing[0], "missing from the service-account key file "
                              "(download it from the Firebase console: Project settings, Service accounts)")
        return cls(data["client_email"], data["private_key"], str(data.get("private_key_id", "")), data["token_uri"])


class FcmTransport(Transport[PushEnvelope]):
    """Sends to FCM's ``projects/{project_id}/messages:send``."""

    name = "fcm"

    def __init__(self, project_id: str, account: ServiceAccount, *, endpoint: str = "https://fcm.googleapis.com",
                 ca_file: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.project_id = project_id
        self.account = account
        self.url = f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self.clock = clock
        self.client = http_client(http2=True, ca_file=ca_file)
        self._token: str | None = None
        self._expires = 0.0
        self._refresh = asyncio.Lock()
        self.tokens_fetched = 0

    @classmethod
    def from_settings(cls, settings: FcmSettings) -> FcmTransport:
        return cls(settings.project_id, ServiceAccount.from_file(settings.credentials_file),
                   endpoint=settings.endpoint, ca_file=settings.ca_file)

    def grant_assertion(self, now: float) -> str:
        """The signed JWT exchanged for an access token."""
        claims = {"iss": self.account.client_email, "scope": SCOPE, "aud": self.account.token_uri,
                  "iat": int(now), "exp": int(now) + TOKEN_LIFETIME}
        headers = {"kid": self.account.private_key_id} if self.account.private_key_id else None
        return jwt.encode(claims, self.account.private_key, algorithm="RS256", headers=headers)

    async def access_token(self) -> str:
        """The cached access token, fetched again a minute before it expires."""
        async with self._refresh:
            now = self.clock()
            if self._token is None or now >= self._expires - REFRESH_MARGIN:
                try:
                    response = await self.client.post(self.account.token_uri, data={
                        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                        "assertion": self.grant_assertion(now)})
                except httpx.HTTPError as exc:
                    raise connection_failure(self.name, self.account.token_uri, exc) from exc
                if response.status_code != 200:
                    raise PushError(self.name, f"the token endpoint refused the service account: "
                                    f"{response.status_code} {response.text[:300]}", status=response.status_code,
                                    server=True)
                grant = response.json()
                self._token = str(grant["access_token"])
                self._expires = now + float(grant.get("expires_in", TOKEN_LIFETIME))
                self.tokens_fetched += 1
            return self._token

    def message(self, envelope: PushEnvelope) -> dict[str, Any]:
        """The v1 ``message`` for one device."""
        note = envelope.notification
        data = dict(note.data)
        if note.url:
            data["url"] = note.url
        android: dict[str, Any] = {"priority": "HIGH" if note.priority == "high" else "NORMAL", "ttl": f"{note.ttl}s"}
        if note.collapse_key:
            android["collapse_key"] = note.collapse_key
        return {"token": envelope.token, "notification": {"title": note.title, "body": note.body},
                "data": data, "android": android}

    async def send(self, envelope: PushEnvelope) -> Delivery:
        token = await self.access_token()
        try:
            response = await self.client.post(self.url, json={"message": self.message(envelope)},
                                              headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise connection_failure(self.name, self.url, exc) from exc
        if response.status_code == 200:
            return Delivery(envelope.key, str(response.json().get("name", "")))
        raise self._error(response)

    def _error(self, response: httpx.Response) -> PushError:
        status = response.status_code
        try:
            error = response.json().get("error", {})
        except (ValueError, AttributeError):
            error = {}
        codes = [d.get("errorCode") for d in error.get("details", []) if isinstance(d, dict) and d.get("errorCode")]
        reason = str(codes[0] if codes else error.get("status") or status)
        problem = f"{status} {reason}: {error.get('message') or response.text[:200]}"
        if reason in ("UNREGISTERED", "SENDER_ID_MISMATCH") or status == 404:
            return PushError(self.name, problem, status=status, reason=reason, device_gone=True)
        if status == 401:
            self._token = None  # fetched again on the retry
            return PushError(self.name, problem, status=status, reason=reason, server=True)
        if status == 429 or status >= 500:
            return PushError(self.name, problem, status=status, reason=reason, server=status >= 500,
                             retry_after=retry_after(response))
        return PushError(self.name, problem, status=status, reason=reason, permanent=True)

    async def close(self) -> None:
        await self.client.aclose()
