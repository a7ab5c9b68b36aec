"""Signed tracking tokens: what a tracked link, the open pixel and an unsubscribe URL carry.

A token names one recipient, one message and one link (its position in the message, the item it
points at and its destination) and is signed with HMAC-SHA256 under a key derived from the
tracking secret. Anyone can read a token; nobody without the secret can make or alter one, and
message numbers being sequential does not help: a guessed token fails its 128-bit signature.

Format: ``base64url(payload) "." base64url(mac[:16])``, where the payload is the fields below
joined by U+001F. Rendering signs (:func:`sign_token`); the tracking server verifies
(:func:`verify_token`) and records nothing for a token that fails.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from typing import Any, NamedTuple

_SEPARATOR = "\x1f"
_MAC_BYTES = 16
_VERSION = "1"


class TokenKind:
    """What a token is for: a click on a link, an open (the pixel), an unsubscribe."""

    CLICK = "c"
    OPEN = "o"
    UNSUBSCRIBE = "u"

    ALL = (CLICK, OPEN, UNSUBSCRIBE)


class TrackingToken(NamedTuple):
    """The verified content of a token (a named tuple: a message signs five of them).

    :param link: the link's position in the message (0-based; -1 for the pixel and unsubscribe).
    :param item_id: the content item the link points at, when it points at one.
    :param url: where a click goes (with the campaign's UTM parameters already added).
    """

    kind: str
    message_key: int
    recipient_id: str
    link: int = -1
    item_id: str = ""
    url: str = ""


def token_key(secret: bytes) -> bytes:
    """The signing key of tokens, derived so it differs from every other use of the secret."""
    return hmac.new(secret, b"kairos/tracking-token/v1", hashlib.sha256).digest()


_BLOCK = 64  # SHA-256's block size
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hash states for ``key`` (RFC 2104), hashed once per key:
    each token copies them (the ``hmac`` module's objects cost as much again around the hashing)."""
    block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
    return hashlib.sha256(block.translate(_INNER_PAD)), hashlib.sha256(block.translate(_OUTER_PAD))


def _mac(key: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 of ``payload`` under ``key``."""
    inner, outer = _pads(key)
    inner, outer = inner.copy(), outer.copy()
    inner.update(payload)
    outer.update(inner.digest())
    return bytes(outer.digest())


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(key: bytes, token: TrackingToken) -> str:
    """The URL-safe text of ``token``, signed with ``key`` (from :func:`token_key`)."""
    payload = _SEPARATOR.join((_VERSION, token.kind, str(token.message_key), token.recipient_id,
                               str(token.link), token.item_id, token.url)).encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload)[:_MAC_BYTES])}"


def verify_token(key: bytes, text: str, kind: str | None = None) -> TrackingToken | None:
    """The token ``text`` carries, or None when it is malformed, forged, altered or of another kind."""
    encoded, dot, signature = text.partition(".")
    if not dot or not encoded or len(text) > 8192:
        return None
    try:
        payload = _unb64(encoded)
        mac = _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    fields = payload.decode("utf-8", errors="replace").split(_SEPARATOR)
    if len(fields) != 7 or fields[0] != _VERSION or fields[1] not in TokenKind.ALL:
        return None
    if kind is not None and fields[1] != kind:
        return None
    try:
        return TrackingToken(kind=fields[1], message_key=int(fields[2]), recipient_id=fields[3],
                             link=int(fields[4]), item_id=fields[5], url=fields[6])
    except ValueError:
        return None
