"""A real SMTP server (aiosmtpd on loopback) that fails on purpose, by recipient.

The local part of each recipient says what the server does with it:

- ``busy-...``: ``450 4.2.1`` at RCPT for the first two attempts, then accepts;
- ``closing-...``: ``421 4.3.2`` at RCPT on the first attempt and closes the connection;
- ``drop-...``: drops the connection at RCPT, without a word, on the first attempt;
- ``gone-...``: ``550 5.1.1`` at RCPT, always;
- ``lost-...``: stores the message, then drops the connection before answering the data;
- anything else: accepted.

``down`` makes every RCPT a ``421`` (a server in trouble). It counts RCPT attempts per address
and keeps every message it stored, so tests can assert "exactly once".
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from engine.dispatch.inbox import free_port


@dataclass
class FaultySmtp:
    host: str = "127.0.0.1"
    port: int = 0
    pipelining: bool = True
    down: bool = False
    attempts: Counter[str] = field(default_factory=Counter)
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered_to(self) -> Counter[str]:
        with self.lock:
            return Counter(address for address, _ in self.delivered)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        local = address.partition("@")[0]
        with self.lock:
            self.attempts[address] += 1
            attempt = self.attempts[address]
        if self.down:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 System not accepting network messages"
        if local.startswith("busy-") and attempt <= 2:
            return "450 4.2.1 Mailbox busy, try again later"
        if local.startswith("closing-") and attempt == 1:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Service shutting down"
        if local.startswith("drop-") and attempt == 1:
            server.transport.abort()
            return "250 OK"
        if local.startswith("gone-"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for address in envelope.rcpt_tos:
                self.delivered.append((address, envelope.original_content or envelope.content))
        if any(a.startswith("lost-") for a in envelope.rcpt_tos):
            server.transport.abort()
        return "250 2.0.0 Queued"


class FaultyServer:
    """Starts :class:`FaultySmtp` in its own thread."""

    def __init__(self, pipelining: bool = True, **kwargs: Any) -> None:
        self.handler = FaultySmtp(port=free_port(), pipelining=pipelining)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.handler.port, **kwargs)

    def __enter__(self) -> FaultySmtp:
        self.controller.start()
        return self.handler

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
