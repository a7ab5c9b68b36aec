"""Delivery status notifications (RFC 3464) back into the store: ``kairos import bounces PATH``.

A DSN is a ``multipart/report; report-type=delivery-status`` message with a
``message/delivery-status`` part: per recipient an ``Action`` (failed, delayed, delivered,
relayed, expanded) and a ``Status`` (``5.1.1``). It is matched to the message it reports on:

1. through the VERP address it was sent to (``To``, ``Delivered-To``, ``X-Original-To``,
   ``Envelope-To``): the envelope sender of each message names its row, signed
   (:mod:`engine.render.verp`), so a forged bounce cannot suppress anyone;
2. failing that, through the ``Message-ID`` of the original message returned in the DSN
   (``message/rfc822`` or ``text/rfc822-headers``).

``failed`` with a 5.x.x status is a hard bounce: a `bounce` event and a hard-bounce suppression
of the address. ``delayed`` or a 4.x.x status is a soft bounce: an event only. Other messages in
the mailbox (auto-replies, DSNs that only report delivery) are counted and left alone.

The whole mailbox is read and checked before anything is written; a malformed DSN stops the
import with its place (file, and line for an mbox) and the field, and nothing is stored.
"""

from __future__ import annotations

import hashlib
import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message as EmailMessage
from email.utils import getaddresses
from pathlib import Path

from engine.errors import DataError
from engine.store import Store, outbox, queries
from engine.store.tables import Message

_ADDRESS_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Failed-Recipients")


@dataclass(frozen=True)
class RecipientStatus:
    address: str
    action: str
    status: str
    diagnostic: str

    @property
    def hard(self) -> bool:
        return self.action == "failed" and self.status.startswith("5")

    @property
    def soft(self) -> bool:
        return self.action == "delayed" or (self.action == "failed" and self.status.startswith("4"))


@dataclass(frozen=True)
class Dsn:
    """One delivery status notification, as found in the mailbox."""

    where: str
    line: int | None
    digest: str
    addressed_to: tuple[str, ...]
    original_message_id: str | None
    recipients: tuple[RecipientStatus, ...]


@dataclass(frozen=True)
class BounceImport:
    messages: int
    reports: int
    hard: int
    soft: int
    unmatched: int
    suppressed: int


def _mailbox_messages(path: Path) -> Iterator[tuple[str, int | None, bytes]]:
    """(where, line, raw bytes) of each message in a Maildir or an mbox file."""
    if path.is_dir():
        if not any((path / sub).is_dir() for sub in ("cur", "new")):
            raise DataError(path, None, "expected a Maildir (a directory with cur/ and new/) or an mbox file")
        maildir = mailbox.Maildir(str(path), factory=None, create=False)
        for key in sorted(maildir.keys()):
            sub = "new" if (path / "new" / key).exists() else "cur"
            yield f"{path}/{sub}/{key}", None, maildir.get_bytes(key)
        return
    try:
        head = path.read_bytes()[:5]
    except OSError as exc:
        raise DataError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    if head and not head.startswith(b"From "):
        raise DataError(path, None, "expected an mbox file (starting with a 'From ' line) or a Maildir", line=1)
    lines = path.read_bytes().split(b"\n")
    starts = [number for number, line in enumerate(lines, start=1) if line.startswith(b"From ")]
    box = mailbox.mbox(str(path), factory=None, create=False)
    for index, key in enumerate(box.keys()):
        yield str(path), starts[index] if index < len(starts) else None, box.get_bytes(key, from_=False)


def _status_fields(part: EmailMessage) -> list[EmailMessage]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, EmailMessage)]
    # Some parsers leave the report as text: parse the blocks (separated by blank lines) ourselves.
    text = payload if isinstance(payload, str) else ""
    return [message_from_bytes(block.strip().encode() + b"\n", policy=policy.compat32)
            for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]


def _typed_value(value: str | None) -> str:
    """``rfc822; user@example.com`` -> ``user@example.com``; ``smtp; 550 ...`` -> ``550 ...``."""
    if value is None:
        return ""
    kind, separator, rest = str(value).partition(";")
    return " ".join((rest if separator else kind).split())


def parse_dsn(raw: bytes, where: str, line: int | None) -> Dsn | None:
    """The DSN in ``raw``, or None when it is not one. Malformed DSNs raise DataError."""
    parsed = message_from_bytes(raw, policy=policy.compat32)
    if parsed.get_content_type() != "multipart/report" or \
            str(parsed.get_param("report-type", "")).lower() != "delivery-status":
        return None

    def fail(field: str, problem: str) -> DataError:
        return DataError(where, field, problem, line=line)

    status_part = next((p for p in parsed.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        raise fail("message/delivery-status", "a delivery-status report without its message/delivery-status part")
    blocks = _status_fields(status_part)
    recipients = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        if block.get("Final-Recipient") is None and block.get("Action") is None:
            continue  # the per-message block
        for field in ("Final-Recipient", "Action", "Status"):
            if not block.get(field):
                raise fail(field, f"a per-recipient block without {field} (RFC 3464 requires it)")
        status = _typed_value(block.get("Status"))
        if status[:1] not in ("2", "4", "5") or status.count(".") != 2:
            raise fail("Status", f"expected a status code such as 5.1.1, got {status!r}")
        recipients.append(RecipientStatus(
            address=_typed_value(block.get("Final-Recipient")).strip("<>").lower(),
            action=_typed_value(block.get("Action")).lower(), status=status,
            diagnostic=_typed_value(block.get("Diagnostic-Code"))))
    if not recipients:
        raise fail("Final-Recipient", "a delivery-status report that names no recipient")

    original_id = None
    for part in parsed.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
                original_id = inner[0].get("Message-ID")
        elif kind == "text/rfc822-headers":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                original_id = message_from_bytes(body, policy=policy.compat32).get("Message-ID")
        if original_id:
            break
    addressed = tuple(address for _, address in getaddresses(
        [str(v) for header in _ADDRESS_HEADERS for v in parsed.get_all(header, [])]) if address)
    return Dsn(where=where, line=line, digest=hashlib.sha256(raw).hexdigest()[:12], addressed_to=addressed,
               original_message_id=" ".join(str(original_id).split()) if original_id else None,
               recipients=tuple(recipients))


def read_dsns(path: Path) -> tuple[int, list[Dsn]]:
    """Every DSN in a Maildir or mbox: (messages read, the DSNs among them)."""
    if not path.exists():
        raise DataError(path, None, "no such file or directory")
    count, found = 0, []
    for where, line, raw in _mailbox_messages(path):
        count += 1
        dsn = parse_dsn(raw, where, line)
        if dsn is not None:
            found.append(dsn)
    return count, found


def import_bounces(store: Store, path: Path, verp: Callable[[str], int | None], now: datetime) -> BounceImport:
    """Read ``path`` and record its bounces (rules in the module docstring), in one transaction.

    :param verp: the message row a VERP address names (None when it is not a valid one of ours).
    """
    count, dsns = read_dsns(path)
    hard = soft = unmatched = suppressed = 0
    with store.session() as session:
        verp_ids = {dsn.digest: next((key for a in dsn.addressed_to if (key := verp(a)) is not None), None)
                    for dsn in dsns}
        by_id = outbox.messages_by_id(session, [k for k in verp_ids.values() if k is not None])
        by_header = outbox.messages_by_header_id(session, [d.original_message_id for d in dsns
                                                           if d.original_message_id])
        events = []
        for dsn in dsns:
            key = verp_ids[dsn.digest]
            message: Message | None = by_id.get(key) if key is not None else None
            if message is None and dsn.original_message_id:
                message = by_header.get(dsn.original_message_id)
            if message is None:
                unmatched += 1
                continue
            for status in dsn.recipients:
                if not (status.hard or status.soft):
                    continue
                kind = "hard" if status.hard else "soft"
                detail = f"{status.action} {status.status} {status.diagnostic}".strip()
                events.append(outbox.bounce_event(message, now, kind=kind, detail=detail, source="dsn",
                                                  suffix=f".{dsn.digest}"))
                if status.hard:
                    hard += 1
                    suppressed += queries.add_suppression(
                        session, reason="hard_bounce", recipient_id=message.recipient_id,
                        email=status.address or None, channel="email", detail=detail[:500])
                else:
                    soft += 1
        outbox.record_events(session, events)
    return BounceImport(messages=count, reports=len(dsns), hard=hard, soft=soft, unmatched=unmatched,
                        suppressed=suppressed)
