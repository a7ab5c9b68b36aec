"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm message encryption (RFC 8291).

A device's token is the browser's subscription JSON: ``endpoint`` and ``keys`` (``p256dh``, the
browser's P-256 public key, and ``auth``, a 16-byte secret). The payload - a JSON object with
``title``, ``body``, ``url`` and ``data`` - is encrypted with http_ece for that subscription,
with a fresh ephemeral key and salt per message (cryptographic randomness, not the seeded kind).
Requests carry ``TTL``, ``Urgency``, ``Content-Encoding: aes128gcm`` and ``Authorization: vapid
t=<JWT>, k=<public key>`` where the JWT (ES256; ``aud`` the push service's origin, ``exp`` at
most 24 hours ahead, ``sub`` the operator's contact) is signed by py-vapid and cached per origin.

Answers: 201 accepted; 404 and 410 mean the subscription is gone (the device is deactivated);
413 too large and other 4xx fail the message; 429 and 5xx are temporary, honouring Retry-After.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from engine.config import WebPushSettings
from engine.dispatch.base import Delivery, PushEnvelope, Transport
from engine.dispatch.http import connection_failure, http_client, retry_after
from engine.errors import ConfigError, PushError

VAPID_LIFETIME = 12 * 3600
MAX_PAYLOAD = 4096 - 86 - 17  # the push service's 4,096-byte body, less the aes128gcm header and tag


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WebPushTransport(Transport[PushEnvelope]):
    name = "webpush"

    def __init__(self, vapid: Vapid02, subject: str, *, ca_file: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.vapid = vapid
        self.subject = subject
        self.clock = clock
        self.client = http_client(http2=False, ca_file=ca_file)
        self._authorization: dict[str, tuple[str, float]] = {}

    @classmethod
    def from_settings(cls, settings: WebPushSettings) -> WebPushTransport:
        path = settings.vapid_private_key_file
        try:
            vapid = Vapid02.from_pem(path.read_bytes())
        except OSError as exc:
            raise ConfigError(path, "push.webpush.vapid_private_key_file", f"cannot read it: {exc}") from None
        except Exception as exc:  # py-vapid raises bare exceptions for a bad key
            raise ConfigError(path, "push.webpush.vapid_private_key_file",
                              f"not a PEM P-256 private key ({type(exc).__name__})") from None
        if not settings.subject.startswith(("mailto:", "https:")):
            raise ConfigError(None, "push.webpush.subject", "expected a mailto: or https: contact (RFC 8292)")
        return cls(vapid, settings.subject, ca_file=settings.ca_file)

    def authorization(self, endpoint: str) -> str:
        """The VAPID Authorization header for the push service of ``endpoint`` (cached per origin)."""
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        now = self.clock()
        cached = self._authorization.get(origin)
        if cached is None or cached[1] - now < VAPID_LIFETIME / 2:
            expires = now + VAPID_LIFETIME
            header = self.vapid.sign({"aud": origin, "exp": int(expires), "sub": self.subject})["Authorization"]
            cached = (header, expires)
            self._authorization[origin] = cached
        return cached[0]

    @staticmethod
    def encrypt(payload: bytes, p256dh: bytes, auth: bytes) -> bytes:
        """aes128gcm for one subscription (RFC 8291), with a fresh sender key and salt; the header's
        key id is the sender's public key, as RFC 8291 requires."""
        sender = ec.generate_private_key(ec.SECP256R1())
        return bytes(http_ece.encrypt(payload, private_key=sender, dh=p256dh, auth_secret=auth, version="aes128gcm"))

    async def send(self, envelope: PushEnvelope) -> Delivery:
        try:
            subscription = json.loads(envelope.token)
            endpoint = str(subscription["endpoint"])
            p256dh, auth = _b64decode(subscription["keys"]["p256dh"]), _b64decode(subscription["keys"]["auth"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PushError(self.name, f"device {envelope.device_id} is not a Web Push subscription "
                            f"(endpoint, keys.p256dh, keys.auth): {exc}", device_gone=True) from None
        note = envelope.notification
        payload = json.dumps({"title": note.title, "body": note.body, "url": note.url, "data": dict(note.data)},
                             separators=(",", ":"), ensure_ascii=False).encode()
        if len(payload) > MAX_PAYLOAD:
            raise PushError(self.name, f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD} a push "
                            "service must accept", reason="PayloadTooLarge", permanent=True)
        headers = {"TTL": str(note.ttl), "Urgency": "high" if note.priority == "high" else "normal",
                   "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                   "Authorization": self.authorization(endpoint)}
        try:
            response = await self.client.post(endpoint, content=self.encrypt(payload, p256dh, auth), headers=headers)
        except httpx.HTTPError as exc:
            raise connection_failure(self.name, endpoint, exc) from exc
        status = response.status_code
        if status in (200, 201, 202):
            return Delivery(envelope.key, response.headers.get("location", str(status)))
        problem = f"{status} {response.text[:200]}".strip()
        if status in (404, 410):
            raise PushError(self.name, problem, status=status, reason="Gone", device_gone=True)
        if status == 429 or status >= 500:
            raise PushError(self.name, problem, status=status, server=status >= 500,
                            retry_after=retry_after(response))
        raise PushError(self.name, problem, status=status, permanent=True)

    async def close(self) -> None:
        await self.client.aclose()
