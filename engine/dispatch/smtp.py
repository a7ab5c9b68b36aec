"""SMTP over aiosmtplib: a pool of persistent connections, with RFC 2920 pipelining.

aiosmtplib opens each connection: TCP or implicit TLS, EHLO, STARTTLS, AUTH. Its ``sendmail``
then costs four round trips and a lock per command, which tops out near 3,000 messages a second
on one core. When the server advertises PIPELINING, the connection is taken over at the
transport level (aiosmtplib's lower layer, already through TLS and AUTH) by :class:`_Pipeline`,
which writes ``MAIL FROM``, ``RCPT TO`` and ``DATA`` as one group and the message body as a
second, reading the replies in order (RFC 2920): two round trips and two writes per message.
Servers without PIPELINING get aiosmtplib's ``sendmail``.

Failures say what they are (:class:`~engine.errors.SmtpError`): a refusal at ``RCPT`` is the
recipient's (``recipient``; a 5xx is a hard bounce), a 421, a drop or a timeout is the server's
(``server``; the connection is discarded), 4xx is temporary and 5xx permanent. Rate limits,
retries and pausing are not here: they wrap this transport (:mod:`engine.dispatch.limits`,
:mod:`~engine.dispatch.retry`, :mod:`~engine.dispatch.breaker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import deque
from pathlib import Path

import aiosmtplib

from engine.dispatch.base import Delivery, Envelope, Transport
from engine.errors import SmtpError

_LEADING_DOT = re.compile(rb"(?m)^\.")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


def _is_recipient_status(message: str) -> bool:
    """An enhanced status code about the address (5.1.x) or the mailbox (5.2.1, 4.2.x)."""
    match = _ENHANCED.match(message)
    return match is not None and (match.group(2) == "1" or (match.group(2), match.group(3)) == ("2", "1"))


def message_body(data: bytes) -> bytes:
    """The DATA section of ``data``: CRLF line ends, leading dots doubled, ending ``.``."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if b"\n." in data or data.startswith(b"."):
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


def _failure(stage: str, code: int, message: str) -> SmtpError:
    recipient = stage == "RCPT" or (code >= 500 and _is_recipient_status(message))
    return SmtpError(message, code=code, permanent=500 <= code < 600, recipient=recipient,
                     server=code == 421 or (400 <= code < 500 and stage != "RCPT"))


class _Pipeline(asyncio.Protocol):
    """An SMTP client session on an already greeted (and authenticated) transport.

    Replies are parsed as they arrive and queued; :meth:`replies` waits for as many as were
    asked for, in order. A lost connection fails every wait with a server-side SmtpError.
    """

    def __init__(self, transport: asyncio.Transport, timeout: float, where: str) -> None:
        self.transport = transport
        self.timeout = timeout
        self.where = where
        self._buffer = bytearray()
        self._replies: deque[tuple[int, str]] = deque()
        self._lines: list[str] = []
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self.lost: str | None = None
        transport.set_protocol(self)

    @property
    def usable(self) -> bool:
        return self.lost is None and not self.transport.is_closing()

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buffer[:end + 1]
            self._lines.append(line[4:])
            if line[3:4] != "-":
                try:
                    code = int(line[:3])
                except ValueError:
                    code = 0
                self._replies.append((code, "\n".join(self._lines)))
                self._lines = []
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = f"connection to {self.where} lost" + (f": {exc}" if exc else "")
        self._wake(force=True)

    def eof_received(self) -> bool:
        self.lost = f"connection to {self.where} closed by the server"
        self._wake(force=True)
        return False

    def _wake(self, force: bool = False) -> None:
        if self._waiter is not None and not self._waiter.done() and (force or len(self._replies) >= self._wanted):
            self._waiter.set_result(None)

    async def replies(self, count: int) -> list[tuple[int, str]]:
        if len(self._replies) < count and self.lost is None:
            self._wanted = count
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, self.timeout)
            except TimeoutError:
                self.close()
                raise SmtpError(f"no reply from {self.where} within {self.timeout:g}s", server=True) from None
            finally:
                self._waiter = None
        if len(self._replies) < count:
            raise SmtpError(self.lost or f"connection to {self.where} lost", server=True)
        return [self._replies.popleft() for _ in range(count)]

    def write(self, data: bytes) -> None:
        if not self.usable:
            raise SmtpError(self.lost or f"connection to {self.where} closed", server=True)
        self.transport.write(data)

    async def deliver(self, envelope: Envelope) -> str:
        commands = [b"MAIL FROM:<" + envelope.sender.encode() + b">\r\n"]
        commands += [b"RCPT TO:<" + rcpt.encode() + b">\r\n" for rcpt in envelope.recipients]
        self.write(b"".join(commands) + b"DATA\r\n")
        answers = await self.replies(len(commands) + 1)
        (mail_code, mail_text), rcpts, (data_code, data_text) = answers[0], answers[1:-1], answers[-1]
        refused = [(code, text) for code, text in rcpts if code >= 400]
        problem: SmtpError | None = None
        if mail_code == 421 or data_code == 421 or any(code == 421 for code, _ in rcpts):
            self.close()
            problem = _failure("MAIL", 421, next(t for c, t in answers if c == 421))
        elif mail_code >= 400:
            problem = _failure("MAIL", mail_code, mail_text)
        elif refused and len(refused) == len(rcpts):
            problem = _failure("RCPT", *refused[0])
        elif data_code != 354:
            problem = _failure("DATA", data_code, data_text)
        if problem is not None:
            if data_code == 354:  # the server wants a body we will not send: only closing aborts it
                self.close()
            elif self.usable:
                await self._reset()
            raise problem
        self.write(message_body(envelope.data))
        try:
            [(code, text)] = await self.replies(1)
        except SmtpError as exc:
            raise SmtpError(f"{exc.problem}, after the whole message was sent and before the server's answer",
                            server=True, ambiguous=True) from exc
        if code == 421:
            self.close()
        if code >= 400:
            raise _failure("DATA", code, text)
        return f"{code} {text}"

    async def _reset(self) -> None:
        self.write(b"RSET\r\n")
        [(code, _text)] = await self.replies(1)
        if code != 250:
            self.close()

    async def quit(self) -> None:
        if self.usable:
            self.write(b"QUIT\r\n")
            with contextlib.suppress(SmtpError):
                await self.replies(1)
        self.close()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
        self.lost = self.lost or f"connection to {self.where} closed"


class _Plain:
    """A connection without PIPELINING: aiosmtplib's ``sendmail``."""

    def __init__(self, client: aiosmtplib.SMTP, where: str) -> None:
        self.client = client
        self.where = where
        self.broken = False

    @property
    def usable(self) -> bool:
        return not self.broken and self.client.is_connected

    async def deliver(self, envelope: Envelope) -> str:
        stage = "MAIL"
        try:
            await self.client.mail(envelope.sender)
            stage = "RCPT"
            for recipient in envelope.recipients:
                await self.client.rcpt(recipient)
            stage = "DATA"
            start = await self.client.execute_command(b"DATA")
            if start.code != 354:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            stage = "BODY"
            self.client.protocol.write(message_body(envelope.data))  # type: ignore[union-attr]
            response = await self.client.protocol.read_response(self.client.timeout)  # type: ignore[union-attr]
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                self.close()
            elif stage != "BODY":
                await self._reset()
            raise _failure(stage, exc.code, exc.message) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError, AttributeError) as exc:
            self.close()
            raise SmtpError(f"connection to {self.where} failed: {exc}" + (
                ", after the whole message was sent and before the server's answer" if stage == "BODY" else ""),
                server=True, ambiguous=stage == "BODY") from exc
        if response.code >= 400:
            if response.code == 421:
                self.close()
            raise _failure("DATA", response.code, response.message)
        return f"{response.code} {response.message}"

    async def _reset(self) -> None:
        try:
            await self.client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.close()

    async def quit(self) -> None:
        try:
            await self.client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.close()

    def close(self) -> None:
        self.broken = True
        self.client.close()


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
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Pipeline | _Plain] = []
        self.connections_opened = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.starttls):
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    async def _connect(self) -> _Pipeline | _Plain:
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
            return _Pipeline(transport, self.timeout, self.where)
        return _Plain(client, self.where)

    async def send(self, envelope: Envelope) -> Delivery:
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                response = await connection.deliver(envelope)
            finally:
                if connection.usable:
                    self._idle.append(connection)
            return Delivery(envelope.key, response)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(connection.quit() for connection in idle), return_exceptions=True)
