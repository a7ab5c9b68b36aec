"""DKIM signatures (RFC 6376; ed25519 per RFC 8463), signed by OpenSSL through ``cryptography``.

dkimpy signs RSA with Python integers (about 6 ms a message) and parses every message it signs.
Here the headers are signed as they were built (no parsing), the body hash and the signature
come from OpenSSL, and the DKIM-Signature header is laid out exactly as dkimpy lays it out, so
the two give byte-identical signatures (``tests/render/test_dkim.py``) and any DKIM verifier
accepts them.

Signed headers: From, To, Subject, Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post
(which dkimpy's default list leaves out; RFC 8058 asks for it), List-Id, Feedback-ID,
MIME-Version and Content-Type. Canonicalization: relaxed/relaxed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from engine.config import DkimSettings
from engine.errors import ConfigError

SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post",
                  "list-id", "feedback-id", "mime-version", "content-type")
HEADER_NAME = "DKIM-Signature"
MIN_RSA_BITS = 2048
_WSP = re.compile(rb"\t[ \t]*| [ \t]+")  # only runs that change: a single space stays as it is
_WSP_BEFORE_CRLF = re.compile(rb"[ \t]+\r\n")


def canonical_body(body: bytes) -> bytes:
    """Relaxed body canonicalization: runs of WSP to one space, none at line ends, no trailing blank lines."""
    # Each regex runs only when the bytes it rewrites occur (a byte search is far cheaper than a
    # scan by the regex engine, and quoted-printable bodies rarely have either).
    if b" \r\n" in body or b"\t" in body:
        body = _WSP_BEFORE_CRLF.sub(b"\r\n", body)
    if b"  " in body or b"\t" in body:
        body = _WSP.sub(b" ", body)
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    return b"" if body == b"\r\n" else body


def canonical_header(name: str, value: str) -> bytes:
    """Relaxed header canonicalization: lowercase name, unfolded value with WSP runs collapsed."""
    unfolded = value.replace("\r\n", "").replace("\n", "").encode()
    return name.lower().strip().encode() + b":" + _WSP.sub(b" ", unfolded).strip(b" \t")


def fold_signature(value: str, name_length: int = len(HEADER_NAME)) -> str:
    """Fold a tag list at spaces under 72 columns, the first line leaving room for the header name.

    The same layout dkimpy writes, so signatures of the two compare byte for byte.
    """
    width = 72 - name_length
    if len(value) <= width or (value.endswith("\r\n") and len(value) <= width + 2):
        return value
    folded = ""
    while len(value) > width:
        space = value[:width].rfind(" ")
        cut, resume = (width, width) if space < 0 else (space, space + 1)
        folded += value[:cut] + "\r\n "
        value = value[resume:]
        width = 71
    if len(value) > 2:
        return folded + value
    return folded[:-1] if folded.startswith(" ") else folded + value


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for ``domain`` with the key published at ``selector._domainkey.domain``."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    header_name: ClassVar[str] = HEADER_NAME

    @property
    def algorithm(self) -> str:
        return "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"

    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        public = self.key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def sign(self, headers: Sequence[tuple[str, str]], body: bytes, timestamp: int) -> str:
        """The value of the DKIM-Signature header for a message of ``headers`` and ``body``.

        :param timestamp: the signing time (``t=``), in seconds since the epoch.
        """
        present = {name.lower() for name, _value in headers}
        signed = [name for name in SIGNED_HEADERS if name in present]
        body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode()
        tags = [("v", "1"), ("a", self.algorithm), ("c", "relaxed/relaxed"), ("d", self.domain),
                ("i", "@" + self.domain), ("q", "dns/txt"), ("s", self.selector), ("t", str(timestamp)),
                ("h", " : ".join(signed)), ("bh", body_hash)]
        unsigned = "; ".join(f"{tag}={value}" for tag, value in tags) + "; b="
        data = self._signed_data(headers, signed, unsigned)
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            signature = self.key.sign(hashlib.sha256(data).digest())
        else:
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return fold_signature(unsigned + base64.b64encode(signature).decode() + "\r\n")[:-2]

    @staticmethod
    def _signed_data(headers: Sequence[tuple[str, str]], signed: Sequence[str], unsigned: str) -> bytes:
        # Each signed name takes the last not yet used instance of that header (RFC 6376 5.4.2).
        chosen: list[bytes] = []
        used: dict[str, int] = {}
        for name in signed:
            index = used.get(name, len(headers))
            while index > 0:
                index -= 1
                if headers[index][0].lower() == name:
                    chosen.append(canonical_header(*headers[index]) + b"\r\n")
                    break
            used[name] = index
        return b"".join(chosen) + canonical_header(HEADER_NAME, unsigned)


def load_signer(settings: DkimSettings) -> DkimSigner:
    """The signer ``[email.dkim]`` describes; a missing, unreadable or weak key is a ConfigError."""
    path = settings.private_key_file
    field = "email.dkim.private_key_file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, field, f"cannot read the DKIM private key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None) if b"-----BEGIN" in data \
            else ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(path, field, "expected an unencrypted PEM private key (RSA or ed25519), or a "
                          f"base64 ed25519 seed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(path, field, f"the RSA key has {key.key_size} bits; use at least {MIN_RSA_BITS}")
        return DkimSigner(settings.domain, settings.selector, key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return DkimSigner(settings.domain, settings.selector, key)
    raise ConfigError(path, field, f"a {type(key).__name__} cannot sign DKIM; use RSA (2048 bits) or ed25519")
