"""Loopback stand-ins for FCM, APNs and a Web Push service, written for the tests.

Each is a real HTTPS server (hypercorn, TLS with a test CA; APNs speaks HTTP/2 only) that
enforces its provider's documented request format, authentication and size limit, and answers
with the provider's documented errors. What a device token does is chosen by its name:

- FCM tokens and APNs tokens: ``ok...`` accepted, ``gone...`` unregistered, ``busy...`` refused
  once with 429 (Retry-After), ``down...`` refused once with 503; an FCM ``invalid...`` token is
  an INVALID_ARGUMENT;
- Web Push subscriptions are made by :meth:`WebPushStandIn.subscribe` with a behaviour
  (``ok``, ``gone``, ``busy``); every accepted payload is decrypted with http_ece and kept.

References: FCM HTTP v1 ``projects.messages.send`` and its ``FcmError`` codes; Apple's "Sending
notification requests to APNs" and "Handling notification responses from APNs"; RFC 8030, 8291,
8292.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.dispatch.certs import LoopbackCA
from tests.dispatch.standin_server import MAX_PAYLOAD, Reply, Request, StandIn


def _once(counter: Counter[str], key: str) -> bool:
    counter[key] += 1
    return counter[key] == 1


class FcmStandIn(StandIn):
    """FCM HTTP v1 and Google's OAuth2 token endpoint (JWT bearer grant)."""

    def __init__(self, ca: LoopbackCA, project_id: str = "kairos-test", token_lifetime: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(ca)
        self.project_id = project_id
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "kairos@kairos-test.iam.gserviceaccount.com"
        self.access_tokens: dict[str, float] = {}
        self.delivered: list[dict[str, Any]] = []
        self.refusals: Counter[str] = Counter()

    @property
    def token_uri(self) -> str:
        return f"{self.origin}/token"

    def service_account(self) -> dict[str, str]:
        """The JSON key file Google would let you download."""
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": "k1",
                "private_key": pem, "client_email": self.client_email, "token_uri": self.token_uri}

    @staticmethod
    def error(status: int, state: str, message: str, code: str | None = None, **headers: str) -> Reply:
        details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}] if code else []
        return Reply.json(status, {"error": {"code": status, "message": message, "status": state,
                                             "details": details}}, **headers)

    def handle(self, request: Request) -> Reply:
        if request.path == "/token":
            return self._token(request)
        if request.path == f"/v1/projects/{self.project_id}/messages:send" and request.method == "POST":
            return self._send(request)
        return self.error(404, "NOT_FOUND", f"no such method {request.path}")

    def _token(self, request: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply.json(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(form.get("assertion", ""), self.key.public_key(), algorithms=["RS256"],
                                audience=self.token_uri, options={"verify_iat": False, "verify_exp": False})
        except jwt.PyJWTError as exc:
            return Reply.json(400, {"error": "invalid_grant", "error_description": str(exc)})
        now = self.clock()
        if claims.get("iss") != self.client_email or "firebase.messaging" not in str(claims.get("scope")) \
                or not claims["iat"] - 300 <= now <= claims["exp"] or claims["exp"] - claims["iat"] > 3600:
            return Reply.json(400, {"error": "invalid_grant", "error_description": "Invalid JWT claims"})
        token = secrets.token_urlsafe(24)
        self.access_tokens[token] = now + self.token_lifetime
        return Reply.json(200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    def _send(self, request: Request) -> Reply:
        bearer = request.headers.get("authorization", "")
        expires = self.access_tokens.get(bearer.removeprefix("Bearer "))
        if not bearer.startswith("Bearer ") or expires is None or expires <= self.clock():
            return self.error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.",
                              "THIRD_PARTY_AUTH_ERROR")
        try:
            message = json.loads(request.body)["message"]
        except (ValueError, KeyError, TypeError):
            return self.error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT")
        problem = self._invalid(message)
        if problem:
            return self.error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT")
        token = message["token"]
        if token.startswith("gone"):
            return self.error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if token.startswith("invalid"):
            return self.error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                              "INVALID_ARGUMENT")
        if token.startswith("busy") and _once(self.refusals, token):
            return self.error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED", **{"retry-after": "1"})
        if token.startswith("down") and _once(self.refusals, token):
            return self.error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE",
                              **{"retry-after": "1"})
        self.delivered.append(message)
        return Reply.json(200, {"name": f"projects/{self.project_id}/messages/{uuid.uuid4().hex[:16]}"})

    @staticmethod
    def _invalid(message: Any) -> str | None:
        """Checks of the v1 Message resource, as the API reports them."""
        if not isinstance(message, dict):
            return "message must be an object"
        allowed = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "token", "topic",
                   "condition"}
        unknown = set(message) - allowed
        if unknown:
            return f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'message'"
        if sum(k in message for k in ("token", "topic", "condition")) != 1:
            return "exactly one of token, topic or condition must be set"
        if len(json.dumps(message).encode()) > MAX_PAYLOAD:
            return "Message is too big"
        if not all(isinstance(v, str) for v in message.get("data", {}).values()):
            return "data values must be strings"
        note = message.get("notification", {})
        if set(note) - {"title", "body", "image"} or not all(isinstance(v, str) for v in note.values()):
            return "notification takes string title, body and image"
        android = message.get("android", {})
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            return "android.priority must be NORMAL or HIGH"
        if "ttl" in android and not re.fullmatch(r"\d+(\.\d{1,9})?s", str(android["ttl"])):
            return "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"
        return None


class ApnsStandIn(StandIn):
    """APNs provider API: HTTP/2 only, token (JWT) authentication."""

    alpn = ("h2",)
    PUSH_TYPES = ("alert", "background", "voip", "complication", "fileprovider", "mdm", "location",
                  "liveactivity", "pushtotalk")

    def __init__(self, ca: LoopbackCA, team_id: str = "TEAM123456", key_id: str = "KEY1234567",
                 topic: str = "com.example.kairos", clock: Callable[[], float] = time.time) -> None:
        super().__init__(ca)
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self.clock = clock
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.delivered: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.refusals: Counter[str] = Counter()
        self.provider_tokens: list[tuple[str, float]] = []

    def signing_key_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @staticmethod
    def error(status: int, reason: str, **extra: Any) -> Reply:
        return Reply.json(status, {"reason": reason, **extra}, **{"apns-id": str(uuid.uuid4()).upper()})

    def handle(self, request: Request) -> Reply:
        if request.http_version != "2":
            return self.error(400, "BadPath")
        match = re.fullmatch(r"/3/device/([^/]*)", request.path)
        if match is None:
            return self.error(404, "BadPath")
        if request.method != "POST":
            return self.error(405, "MethodNotAllowed")
        problem = self._auth(request.headers.get("authorization", ""))
        if problem:
            return problem
        token, headers = match.group(1), request.headers
        if not token:
            return self.error(400, "MissingDeviceToken")
        if "apns-topic" not in headers:
            return self.error(400, "MissingTopic")
        if headers["apns-topic"] != self.topic:
            return self.error(400, "DeviceTokenNotForTopic")
        if headers.get("apns-push-type", "alert") not in self.PUSH_TYPES:
            return self.error(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("10", "5", "1"):
            return self.error(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return self.error(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return self.error(400, "BadCollapseId")
        if len(request.body) > MAX_PAYLOAD:
            return self.error(413, "PayloadTooLarge")
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return self.error(400, "PayloadEmpty")
        if not re.fullmatch(r"(ok|gone|busy|down)[0-9a-f]*", token):
            return self.error(400, "BadDeviceToken")
        if token.startswith("gone"):
            return self.error(410, "Unregistered", timestamp=int(self.clock() * 1000))
        if token.startswith("busy") and _once(self.refusals, token):
            return self.error(429, "TooManyRequests")
        if token.startswith("down") and _once(self.refusals, token):
            return self.error(503, "ServiceUnavailable")
        self.delivered.append((token, dict(headers), payload))
        return Reply(200, headers={"apns-id": str(uuid.uuid4()).upper()})

    def _auth(self, authorization: str) -> Reply | None:
        if not authorization.startswith("bearer "):
            return self.error(403, "MissingProviderToken")
        token = authorization.removeprefix("bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.key.public_key(), algorithms=["ES256"], options={"verify_iat": False})
        except jwt.PyJWTError:
            return self.error(403, "InvalidProviderToken")
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return self.error(403, "InvalidProviderToken")
        now = self.clock()
        if now - float(claims["iat"]) > 3600:
            return self.error(403, "ExpiredProviderToken")
        if not self.provider_tokens or self.provider_tokens[-1][0] != token:
            if self.provider_tokens and now - self.provider_tokens[-1][1] < 20 * 60:
                return self.error(429, "TooManyProviderTokenUpdates")
            self.provider_tokens.append((token, now))
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    behaviour: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes


class WebPushStandIn(StandIn):
    """A push service (RFC 8030) that checks VAPID (RFC 8292) and decrypts aes128gcm (RFC 8291)."""

    URGENCIES = ("very-low", "low", "normal", "high")

    def __init__(self, ca: LoopbackCA, clock: Callable[[], float] = time.time) -> None:
        super().__init__(ca)
        self.clock = clock
        self.subscriptions: dict[str, Subscription] = {}
        self.decrypted: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.refusals: Counter[str] = Counter()

    def subscribe(self, behaviour: str = "ok") -> str:
        """A new browser subscription, as the JSON ``PushSubscription.toJSON()`` gives."""
        name = f"{behaviour}-{secrets.token_hex(6)}"
        subscription = Subscription(behaviour, ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16))
        self.subscriptions[name] = subscription
        public = subscription.key.public_key().public_bytes(serialization.Encoding.X962,
                                                            serialization.PublicFormat.UncompressedPoint)
        return json.dumps({"endpoint": f"{self.origin}/push/{name}",
                           "keys": {"p256dh": _b64(public), "auth": _b64(subscription.auth)}})

    def handle(self, request: Request) -> Reply:
        name = request.path.removeprefix("/push/")
        subscription = self.subscriptions.get(name)
        if request.method != "POST" or subscription is None:
            return Reply(404, b"no such subscription")
        if subscription.behaviour == "gone":
            return Reply(410, b"subscription expired")
        if not request.headers.get("ttl", "").isdigit():
            return Reply(400, b"TTL header required (RFC 8030, section 5.2)")
        if request.headers.get("urgency", "normal") not in self.URGENCIES:
            return Reply(400, b"bad Urgency")
        problem = self._vapid(request.headers.get("authorization", ""))
        if problem:
            return Reply(401 if "missing" in problem else 403, problem.encode())
        if request.headers.get("content-encoding") != "aes128gcm":
            return Reply(415, b"Content-Encoding must be aes128gcm (RFC 8291)")
        if len(request.body) > MAX_PAYLOAD:
            return Reply(413, b"payload too large")
        try:
            plain = http_ece.decrypt(request.body, private_key=subscription.key, auth_secret=subscription.auth,
                                     version="aes128gcm")
        except Exception as exc:
            return Reply(400, f"cannot decrypt: {exc}".encode())
        if subscription.behaviour == "busy" and _once(self.refusals, name):
            return Reply(429, b"slow down", {"retry-after": "1"})
        self.decrypted.append((name, json.loads(plain), dict(request.headers)))
        return Reply(201, headers={"location": f"{self.origin}/message/{uuid.uuid4().hex}"})

    def _vapid(self, authorization: str) -> str | None:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", authorization)
        if match is None:
            return "missing or malformed vapid authorization"
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(match.group(2)))
            claims = jwt.decode(match.group(1), public, algorithms=["ES256"], audience=self.origin,
                                options={"verify_exp": False})
        except (ValueError, jwt.PyJWTError) as exc:
            return f"bad VAPID token: {exc}"
        now = self.clock()
        if not now < float(claims["exp"]) <= now + 24 * 3600:
            return "VAPID exp must be in the future and at most 24 hours ahead"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "VAPID sub must be a mailto: or https: contact"
        return None
