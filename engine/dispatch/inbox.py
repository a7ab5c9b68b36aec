"""A local SMTP inbox: a real SMTP server on 127.0.0.1 that files every message in a Maildir.

The demo (and ``[email] transport = "inbox"``) sends through it over real SMTP, so the path
from render to socket is the production one; only the far end is local.
"""

from __future__ import annotations

import mailbox
import socket
from pathlib import Path
from typing import Any

from engine.dispatch.smtp import SmtpTransport


class _MaildirHandler:
    def __init__(self, directory: Path) -> None:
        self.maildir = mailbox.Maildir(str(directory), create=True)
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = mailbox.MaildirMessage(envelope.original_content or envelope.content)
        self.maildir.add(message)
        self.received += 1
        return "250 Message accepted for delivery"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class InboxServer:
    """An SMTP server on loopback (its own thread) that stores messages in ``directory``."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.directory = directory
        self.host = host
        self.port = port or free_port(host)
        self.handler = _MaildirHandler(directory)
        from aiosmtpd.controller import Controller  # the demo's server: not loaded to send elsewhere

        self._controller = Controller(self.handler, hostname=host, port=self.port, data_size_limit=10_000_000)

    def start(self) -> InboxServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


class InboxTransport(SmtpTransport):
    """SMTP delivery into an :class:`InboxServer` it starts and stops itself."""

    name = "inbox"

    def __init__(self, directory: Path, *, max_connections: int = 8) -> None:
        self.server = InboxServer(directory).start()
        super().__init__(self.server.host, self.server.port, max_connections=max_connections)

    async def close(self) -> None:
        await super().close()
        self.server.stop()
