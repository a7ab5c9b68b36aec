"""SMTP over aiosmtplib with a pool of persistent connections."""

from __future__ import annotations

import asyncio

import aiosmtplib

from engine.dispatch.base import Delivery, Envelope, Transport
from engine.errors import SmtpError


class SmtpTransport(Transport):
    """Delivers over up to ``max_connections`` reused SMTP connections.

    A connection that fails is discarded and the message's failure reported: 5xx answers are
    permanent (the recipient will never accept it), 4xx answers and dropped connections are
    temporary and worth retrying.
    """

    name = "smtp"

    def __init__(self, host: str, port: int, *, max_connections: int = 20, starttls: bool = False,
                 tls: bool = False, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0) -> None:
        self.host, self.port = host, port
        self.starttls, self.tls = starttls, tls
        self.username, self.password = username, password
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[aiosmtplib.SMTP] = []

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls,
                                 start_tls=self.starttls if not self.tls else False, timeout=self.timeout)
        try:
            await client.connect()
            if self.username:
                await client.login(self.username, self.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SmtpError(f"authentication refused by {self.host}:{self.port}: {exc.message}",
                            code=exc.code, permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return client

    async def send(self, envelope: Envelope) -> Delivery:
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            try:
                _errors, response = await client.sendmail(envelope.sender, list(envelope.recipients), envelope.data)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._idle.append(client)
                refusal = exc.recipients[0]
                raise SmtpError(refusal.message, code=refusal.code, permanent=refusal.code >= 500) from exc
            except aiosmtplib.SMTPResponseException as exc:
                if client.is_connected and exc.code != 421:
                    self._idle.append(client)
                else:
                    client.close()
                raise SmtpError(exc.message, code=exc.code, permanent=500 <= exc.code < 600) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                client.close()
                raise SmtpError(f"connection to {self.host}:{self.port} failed: {exc}") from exc
            self._idle.append(client)
            return Delivery(envelope.key, response)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
