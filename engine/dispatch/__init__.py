"""Dispatch: transports behind one interface, and the policies that wrap them."""

from engine.config import EmailSettings, PathSettings
from engine.dispatch.base import Delivery, Envelope, Transport
from engine.dispatch.inbox import InboxServer, InboxTransport
from engine.dispatch.smtp import SmtpTransport


def email_transport(email: EmailSettings, paths: PathSettings) -> Transport:
    """The transport ``[email] transport`` names: an SMTP server, or the local inbox."""
    if email.transport == "inbox":
        return InboxTransport(paths.inbox, max_connections=min(email.max_connections, 8))
    return SmtpTransport(email.host, email.port, max_connections=email.max_connections, starttls=email.starttls,
                         tls=email.tls, username=email.username, password=email.password, timeout=email.timeout)


__all__ = ["Delivery", "Envelope", "InboxServer", "InboxTransport", "SmtpTransport", "Transport", "email_transport"]
