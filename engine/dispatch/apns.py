"""Apple Push Notification service over HTTP/2, with token-based authentication.

Each request carries ``authorization: bearer <JWT>``: ES256, signed with the team's .p8 key,
header ``kid`` the key id, claims ``iss`` the team id and ``iat``. Apple refuses a token older
than an hour (``ExpiredProviderToken``) and one renewed more often than every 20 minutes
(``TooManyProviderTokenUpdates``), so the token is renewed after :data:`TOKEN_RENEWAL` (50
minutes). Headers: ``apns-topic`` (the app's bundle id), ``apns-push-type: alert``,
``apns-priority`` 10 (now) or 5 (power-considerate), ``apns-expiration`` (a UNIX time),
``apns-collapse-id``.

Errors as Apple documents them: 410 ``Unregistered`` and 400 ``BadDeviceToken`` deactivate the
device; 403 ``ExpiredProviderToken`` renews the token and retries; 429 and 5xx are temporary
(Retry-After honoured when sent); other 4xx (``PayloadTooLarge``, ``DeviceTokenNotForTopic``,
``BadTopic`` ...) fail the message with Apple's reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from engine.config import ApnsSettings
from engine.dispatch.base import Delivery, PushEnvelope, Transport
from engine.dispatch.http import connection_failure, http_client, retry_after
from engine.errors import ConfigError, PushError

TOKEN_RENEWAL = 50 * 60.0
GONE = ("Unregistered", "BadDeviceToken", "ExpiredToken")


class ApnsTransport(Transport[PushEnvelope]):
    """Sends to ``{endpoint}/3/device/{token}`` over HTTP/2."""

    name = "apns"

    def __init__(self, team_id: str, key_id: str, signing_key: str, topic: str, *,
                 endpoint: str = "https://api.push.apple.com", ca_file: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self._signing_key = signing_key
        self.endpoint = endpoint.rstrip("/")
        self.clock = clock
        self.client = http_client(http2=True, ca_file=ca_file)
        self._token: str | None = None
        self._issued = 0.0
        self.tokens_issued = 0

    @classmethod
    def from_settings(cls, settings: ApnsSettings) -> ApnsTransport:
        try:
            key = settings.key_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(settings.key_file, "push.apns.key_file", f"cannot read the .p8 key: {exc}") from None
        if "PRIVATE KEY" not in key:
            raise ConfigError(settings.key_file, "push.apns.key_file", "expected the PEM (.p8) signing key "
                              "downloaded from Apple (-----BEGIN PRIVATE KEY-----)")
        return cls(settings.team_id, settings.key_id, key, settings.topic, endpoint=settings.endpoint,
                   ca_file=settings.ca_file)

    def provider_token(self) -> str:
        """The current provider JWT, renewed before it is an hour old."""
        now = self.clock()
        if self._token is None or now - self._issued >= TOKEN_RENEWAL:
            self._token = jwt.encode({"iss": self.team_id, "iat": int(now)}, self._signing_key, algorithm="ES256",
                                     headers={"kid": self.key_id})
            self._issued = now
            self.tokens_issued += 1
        return self._token

    def payload(self, envelope: PushEnvelope) -> dict[str, Any]:
        note = envelope.notification
        body: dict[str, Any] = {"aps": {"alert": {"title": note.title, "body": note.body}}}
        body.update(note.data)
        if note.url:
            body["url"] = note.url
        return body

    def headers(self, envelope: PushEnvelope) -> dict[str, str]:
        note = envelope.notification
        headers = {"authorization": f"bearer {self.provider_token()}", "apns-topic": self.topic,
                   "apns-push-type": "alert", "apns-priority": "10" if note.priority == "high" else "5",
                   "apns-expiration": str(int(self.clock()) + note.ttl)}
        if note.collapse_key:
            headers["apns-collapse-id"] = note.collapse_key.encode()[:64].decode("utf-8", "ignore")
        return headers

    async def send(self, envelope: PushEnvelope) -> Delivery:
        url = f"{self.endpoint}/3/device/{envelope.token}"
        content = json.dumps(self.payload(envelope), separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await self.client.post(url, content=content, headers=self.headers(envelope))
        except httpx.HTTPError as exc:
            raise connection_failure(self.name, self.endpoint, exc) from exc
        if response.status_code == 200:
            return Delivery(envelope.key, response.headers.get("apns-id", ""))
        raise self._error(response)

    def _error(self, response: httpx.Response) -> PushError:
        status = response.status_code
        try:
            reason = str(response.json().get("reason", status))
        except (ValueError, AttributeError):
            reason = str(status)
        problem = f"{status} {reason}"
        if status == 410 or reason in GONE:
            return PushError(self.name, problem, status=status, reason=reason, device_gone=True)
        if reason == "ExpiredProviderToken":
            self._token = None
            return PushError(self.name, problem, status=status, reason=reason)
        if status in (403, 429) or status >= 500:
            # 403 other than an expired token is the key or team being refused: every message would be.
            return PushError(self.name, problem, status=status, reason=reason, server=status != 429,
                             retry_after=retry_after(response))
        return PushError(self.name, problem, status=status, reason=reason, permanent=True)

    async def close(self) -> None:
        await self.client.aclose()
