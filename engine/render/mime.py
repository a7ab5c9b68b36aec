"""The bytes of an email, assembled directly: multipart/alternative, text first, HTML last.

The stdlib's ``EmailMessage`` costs over a millisecond a message (policy objects, header
parsing, generator); a million-message campaign should not pay that. The structure here is
fixed, so the bytes are written directly: CRLF line ends, headers folded under 78 columns,
non-ASCII header text as RFC 2047 encoded words. A body goes as it is (``7bit``) when it may
travel so (RFC 2045's 7bit data: ASCII, no NUL, lines within 998 octets; every line end,
a lone CR included, is written CRLF); otherwise quoted-printable (``binascii``). Templates' output is usually the first
kind, and is then neither rewritten nor grown by the encoding. (Relaxed DKIM canonicalization
already ignores the white space at line ends that some relays strip.)

The multipart boundary starts with ``=_``, which quoted-printable output can never contain
(every ``=`` it writes is followed by two hex digits or a line end), and a part that contains
it is quoted-printable, so no body can collide with it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr, parseaddr

from engine.errors import RenderError

CRLF = "\r\n"
MAX_LINE = 78
MAX_7BIT_LINE = 998
_ENCODED_WORD_BYTES = 42  # 56 base64 characters: an encoded word fits a line with its header name
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def sender_domain(from_address: str) -> str:
    """The domain of ``"Name <user@domain>"``: where Message-IDs are minted."""
    return parseaddr(from_address)[1].rpartition("@")[2] or "localhost"


def message_id(run_id: int, message_key: int, campaign: str, domain: str) -> str:
    """A Message-ID fixed by the message row, so a re-send of the same message reuses it."""
    return f"<{campaign}.{run_id}.{message_key}@{domain}>"


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 ``=?utf-8?b?...?=`` words, split on character boundaries."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        encoded = char.encode()
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
            chunk = bytearray()
        chunk += encoded
    if chunk:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
    return words


def header_text(name: str, text: str) -> str:
    """A header value for free text (a subject): folded, and RFC 2047-encoded when not ASCII."""
    text = " ".join(text.split())
    if not text.isascii():
        return (CRLF + " ").join(encoded_words(text))
    return fold(name, text)


def fold(name: str, value: str) -> str:
    """Fold ``value`` at spaces so each line of ``name: value`` stays within 78 columns."""
    if len(name) + 2 + len(value) <= MAX_LINE:
        return value
    lines: list[str] = []
    line = ""
    room = MAX_LINE - len(name) - 2
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, MAX_LINE - 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return (CRLF + " ").join(lines)


def address_header(address: str) -> str:
    """A From/To value; a non-ASCII display name is encoded, the address is checked."""
    if _PLAIN_ADDRESS.fullmatch(address):  # the common case, without the parser: it is its own value
        return address
    name, mailbox = parseaddr(address)
    unsafe = any(ord(char) < 32 for char in address) or any(char.isspace() for char in mailbox)
    if unsafe or "@" not in mailbox or not mailbox.isascii():
        raise RenderError(None, "address", f"not a deliverable address: {address!r}")
    return formataddr((name, mailbox), charset="utf-8") if name else mailbox


@functools.lru_cache(maxsize=64)
def _date_header(date: datetime) -> str:
    return format_datetime(date)  # a batch's messages share their date: formatted once


def encode_body(text: str, boundary: str = "") -> tuple[bytes, str]:
    """``text`` as a body part's bytes, with their Content-Transfer-Encoding (rules in the module doc).

    :param boundary: the multipart boundary the part goes between: a text containing it is encoded.
    """
    # Any line end (CRLF, LF, a lone CR) becomes CRLF here, as SMTP would make it later, after signing.
    lines = (text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text).split("\n")
    if lines[-1] == "":
        lines.pop()  # the text ended with a line end: it is written back below
    if (text.isascii() and "\0" not in text and max(map(len, lines), default=0) <= MAX_7BIT_LINE
            and (not boundary or boundary not in text)):
        return (CRLF.join(lines) + CRLF).encode("ascii"), "7bit"
    # b2a_qp writes its soft line breaks in the style of the first line end it meets: CRLF here.
    return binascii.b2a_qp((CRLF.join(lines) + CRLF).encode(), quotetabs=False, istext=True, header=False), \
        "quoted-printable"


@dataclass(frozen=True)
class BuiltEmail:
    """Headers (name, folded value) in order, and the body bytes; :meth:`as_bytes` joins them.

    Kept apart so that DKIM signs the headers as written, without parsing the message again.
    """

    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header_bytes(self, first: Sequence[tuple[str, str]] = ()) -> bytes:
        return "".join(f"{name}: {value}{CRLF}" for name, value in (*first, *self.headers)).encode("ascii")

    def as_bytes(self, first: Sequence[tuple[str, str]] = ()) -> bytes:
        """The RFC 5322 message; ``first`` are headers to put on top (a DKIM signature)."""
        return self.header_bytes(first) + b"\r\n" + self.body


def build_email(*, from_header: str, to: str, subject: str, text: str, html: str | None,
                header_message_id: str, date: datetime,
                extra_headers: Sequence[tuple[str, str]] = ()) -> BuiltEmail:
    """One message. ``from_header`` is already formatted (:func:`address_header`, once per campaign);
    ``extra_headers`` (List-Unsubscribe ...) must be ASCII and go before the MIME headers."""
    headers: list[tuple[str, str]] = [
        ("From", from_header),
        ("To", address_header(to)),
        ("Subject", header_text("Subject", subject)),
        ("Date", _date_header(date)),
        ("Message-ID", header_message_id),
        *extra_headers,
        ("MIME-Version", "1.0"),
    ]
    if html is None:
        text_part, text_encoding = encode_body(text)
        headers += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", text_encoding)]
        return BuiltEmail(tuple(headers), text_part)
    boundary = "=_k" + hashlib.sha1(header_message_id.encode(), usedforsecurity=False).hexdigest()[:24]
    text_part, text_encoding = encode_body(text, boundary)
    html_part, html_encoding = encode_body(html, boundary)
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    # The CRLF before a delimiter belongs to the delimiter (RFC 2046), hence the extra one after each part.
    delimiter = f"--{boundary}\r\n".encode()
    body = b"".join((
        delimiter, b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: ",
        _ENCODING_LINES[text_encoding], text_part, b"\r\n",
        delimiter, b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: ",
        _ENCODING_LINES[html_encoding], html_part, b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ))
    return BuiltEmail(tuple(headers), body)


_ENCODING_LINES = {name: f"{name}\r\n\r\n".encode() for name in ("7bit", "quoted-printable")}
