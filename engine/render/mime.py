"""Build the bytes of an email: multipart/alternative (text first, HTML last), CRLF line ends."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from engine.render.templates import RenderedEmail


def sender_domain(from_address: str) -> str:
    """The domain of ``"Name <user@domain>"``: where Message-IDs are minted."""
    return parseaddr(from_address)[1].rpartition("@")[2] or "localhost"


def message_id(run_id: int, message_key: int, campaign: str, domain: str) -> str:
    """A Message-ID fixed by the message row, so a re-send of the same message reuses it."""
    return f"<{campaign}.{run_id}.{message_key}@{domain}>"


def build_email(rendered: RenderedEmail, *, from_address: str, to: str, header_message_id: str,
                date: datetime, extra_headers: dict[str, str] | None = None) -> bytes:
    """The RFC 5322 bytes of one message."""
    message = EmailMessage(policy=SMTP)
    message["From"] = from_address
    name, address = parseaddr(to)
    message["To"] = Address(display_name=name, addr_spec=address) if name else address
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = header_message_id
    for header, value in (extra_headers or {}).items():
        message[header] = value
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return message.as_bytes()
