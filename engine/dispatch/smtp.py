"""SMTP over aiosmtplib: a pool of persistent connections, with RFC 2920 pipelining.

aiosmtplib opens each connection: TCP or implicit TLS, EHLO, STARTTLS, AUTH. Its ``sendmail``
then costs four round trips and a lock per command, which tops out near 3,000 messages a second
on one core. When the server advertises PIPELINING, the connection is taken over at the
transport level (aiosmtplib's lower layer, already through TLS and AUTH) by a
:class:`~engine.dispatch.smtp_session.PipelinedSession`, which writes each message's commands
as one group and its body together with the next message's commands: about one write and one
read per message. Servers without PIPELINING get aiosmtplib's commands one at a time.

Each connection is served by a worker task that takes messages from one queue, so a busy
connection keeps pipelining while others open as the queue grows (up to ``max_connections``).

Failures say what they are (:class:`~engine.errors.SmtpError`): a refusal at ``RCPT`` is the
recipient's (``recipient``; a 5xx is a hard bounce), a 421, a drop or a timeout is the server's
(``server``; the connection is discarded), 4xx is temporary and 5xx permanent, and a connection
lost after the whole message was written is ``ambiguous``. Rate limits, retries and pausing are
not here: they wrap this transport (:mod:`engine.dispatch.limits`, :mod:`~engine.dispatch.retry`,
:mod:`~engine.dispatch.breaker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import aiosmtplib

from engine.dispatch.base import Delivery, Envelope, Transport
from engine.dispatch.smtp_session import CommandSession, Job, PipelinedSession, failure, message_body
from engine.errors import SmtpError

__all__ = ["SmtpTransport", "failure", "message_body"]


class SmtpTransport(Transport[Envelope]):
    """Delivers over up to ``max_connections`` reused SMTP connections.

    :param tls: implicit TLS (port 465); :param starttls: upgrade with STARTTLS (and refuse a
        server that cannot); :param ca_file: extra CA bundle to trust (a private relay's CA).
    :param pipelining: use RFC 2920 pipelining when the server offers it.
    """

    name = "smtp"

    def __init__(self, host: str, port: int, *, max_connections: int = 20, starttls: bool = False,
                 tls: bool = False, username: str | None = None, password: str | None = None,
                 timeout: float = 30.0, ca_file: Path | None = None, pipelining: bool = True) -> None:
        self.host, self.port = host, port
        self.starttls, self.tls = starttls, tls
        self.username, self.password = username, password
        self.timeout = timeout
        self.ca_file = ca_file
        self.pipelining = pipelining
        self.max_connections = max_connections
        self._queue: asyncio.Queue[Job] | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._sessions: set[PipelinedSession | CommandSession] = set()
        self.connections_opened = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.starttls):
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    async def _connect(self) -> PipelinedSession | CommandSession:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls,
                                 start_tls=self.starttls if not self.tls else False, timeout=self.timeout,
                                 tls_context=self._tls_context())
        try:
            await client.connect()
            if not client.esmtp_extensions:
                await client.ehlo()
            if self.username:
                await client.login(self.username, self.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            # Every message would fail the same way: a server failure, so the run pauses.
            raise SmtpError(f"authentication refused by {self.where}: {exc.message}", code=exc.code,
                            server=True) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            client.close()
            raise SmtpError(f"cannot connect to {self.where}: {exc}", server=True) from exc
        self.connections_opened += 1
        transport = client.transport
        if self.pipelining and client.supports_extension("pipelining") and isinstance(transport, asyncio.Transport):
            return PipelinedSession(transport, self.timeout, self.where)
        return CommandSession(client, self.where)

    async def send(self, envelope: Envelope) -> Delivery:
        if self._queue is None:
            self._queue = asyncio.Queue()
        job = Job(envelope, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        if self._queue.qsize() > self._waiting and len(self._workers) < self.max_connections:
            worker = asyncio.get_running_loop().create_task(self._work(self._queue))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await job.answer

    def _take(self) -> Job | None:
        """The next queued job, if one is waiting (never waits)."""
        if self._queue is None or self._queue.empty():
            return None
        return self._queue.get_nowait()

    async def _work(self, queue: asyncio.Queue[Job]) -> None:
        """One connection's worker: take jobs, (re)connect when needed, deliver."""
        session: PipelinedSession | CommandSession | None = None
        try:
            while True:
                self._waiting += 1
                try:
                    job = await queue.get()
                finally:
                    self._waiting -= 1
                if session is None or not session.usable:
                    if session is not None:
                        self._sessions.discard(session)
                    try:
                        session = await self._connect()
                    except SmtpError as error:
                        session = None
                        job.fail(error)
                        if not any(s.usable for s in self._sessions):
                            self._fail_queue(error)
                        continue
                    self._sessions.add(session)
                try:
                    await session.deliver(job, self._take)
                except SmtpError as error:
                    job.fail(error)
        finally:
            if session is not None:
                self._sessions.discard(session)
                with contextlib.suppress(Exception):
                    session.close()

    def _fail_queue(self, error: SmtpError) -> None:
        """No connection to the server works: answer every waiting job now rather than let each
        wait out its own connection attempt (against a silent server, ``timeout`` apiece)."""
        while (job := self._take()) is not None:
            job.fail(SmtpError(error.problem, code=error.code, server=True))

    async def close(self) -> None:
        """Say QUIT on every open connection, then stop the workers."""
        sessions, self._sessions = list(self._sessions), set()
        await asyncio.gather(*(session.quit() for session in sessions if session.usable), return_exceptions=True)
        workers, self._workers = set(self._workers), set()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._queue = None
