"""VERP return paths: the envelope sender names the message, so a bounce finds its way back.

``bounces+m1234.5f2a9c01be@example.com`` is message row 1234, signed: the suffix is the first
10 hex digits of HMAC-SHA256(secret, "m1234"), so a forged bounce cannot suppress someone else.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

_VERP = re.compile(r"^(?P<local>[^+@\s]+)\+m(?P<id>\d{1,19})\.(?P<sig>[0-9a-f]{10})@(?P<domain>[^@\s]+)$")


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, digestmod=hashlib.sha256)  # the key's pads hashed once; copied per address


def _signature(message_key: int, secret: bytes) -> str:
    signer = _keyed(secret).copy()
    signer.update(f"m{message_key}".encode())
    return signer.hexdigest()[:10]


def verp_address(message_key: int, secret: bytes, mailbox: str) -> str:
    """The return path of message ``message_key`` under ``mailbox`` (``bounces@example.com``)."""
    local, _, domain = mailbox.rpartition("@")
    return f"{local}+m{message_key}.{_signature(message_key, secret)}@{domain}"


def parse_verp(address: str, secret: bytes) -> int | None:
    """The message row id a VERP address names, or None if it is not one of ours (or forged)."""
    match = _VERP.match(address.strip().strip("<>"))
    if match is None:
        return None
    key = int(match.group("id"))
    return key if hmac.compare_digest(match.group("sig"), _signature(key, secret)) else None
