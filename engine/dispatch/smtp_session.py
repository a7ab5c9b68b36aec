"""SMTP sessions on an open connection: pipelined (RFC 2920) or through aiosmtplib's commands.

A session delivers a stream of jobs, one at a time, handed to :meth:`deliver` together with a
way to take the next job without waiting. The pipelined session writes each message as one
group - ``MAIL FROM``, ``RCPT TO``, ``DATA`` - and, once the server said 354, the body together
with the next message's group: RFC 2920 lets the message content open a group, so a steady
stream costs one write and about one read per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import aiosmtplib

from engine.dispatch.base import Delivery, Envelope
from engine.errors import SmtpError

_LEADING_DOT = re.compile(rb"(?m)^\.")
_LINE_ENDS = re.compile(rb"\r\n|\n|\r")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
AFTER_DATA = ", after the whole message was sent and before the server's answer"


class Job(NamedTuple):
    """One envelope waiting for its answer."""

    envelope: Envelope
    answer: asyncio.Future[Delivery]

    def done(self, response: str) -> None:
        if not self.answer.done():
            self.answer.set_result(Delivery(self.envelope.key, response))

    def fail(self, error: SmtpError) -> None:
        if not self.answer.done():
            self.answer.set_exception(error)


NextJob = Callable[[], "Job | None"]


def _is_recipient_status(message: str) -> bool:
    """An enhanced status code about the address (5.1.x) or the mailbox (5.2.1)."""
    match = _ENHANCED.match(message)
    return match is not None and (match.group(2) == "1" or (match.group(2), match.group(3)) == ("2", "1"))


def failure(stage: str, code: int, message: str) -> SmtpError:
    """The error of a refusal at ``stage`` (MAIL, RCPT or DATA)."""
    recipient = stage == "RCPT" or (code >= 500 and _is_recipient_status(message))
    return SmtpError(message, code=code, permanent=500 <= code < 600, recipient=recipient,
                     server=code == 421 or (400 <= code < 500 and stage != "RCPT"))


def message_body(data: bytes, crlf: bool = False) -> bytes:
    """The DATA section of ``data``: CRLF line ends, leading dots doubled, ending ``.``.

    :param crlf: ``data``'s line ends are known to be CRLF already (:attr:`Envelope.crlf`).
    """
    if not crlf:
        line_ends = data.count(b"\r\n")
        if data.count(b"\n") != line_ends or data.count(b"\r") != line_ends:
            data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if b"\n." in data or data.startswith(b"."):
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


def _group(envelope: Envelope) -> bytes:
    rcpts = b"".join(b"RCPT TO:<" + r.encode() + b">\r\n" for r in envelope.recipients)
    return b"MAIL FROM:<" + envelope.sender.encode() + b">\r\n" + rcpts + b"DATA\r\n"


class PipelinedSession(asyncio.Protocol):
    """A session on a greeted (and authenticated) transport, taken over from aiosmtplib.

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
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buffer[:end + 1]
            self._lines.append(line[4:])
            if line[3:4] != "-":
                code = int(line[:3]) if line[:3].isdigit() else 0
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

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())

    async def replies(self, count: int) -> list[tuple[int, str]]:
        if len(self._replies) < count and self.lost is None:
            loop = asyncio.get_running_loop()
            self._wanted = count
            self._waiter = waiter = loop.create_future()
            deadline = loop.call_later(self.timeout, self._time_out, waiter)
            try:
                await waiter
            except TimeoutError:
                self.close()
                raise SmtpError(f"no reply from {self.where} within {self.timeout:g}s", server=True) from None
            finally:
                deadline.cancel()
                self._waiter = None
        if len(self._replies) < count:
            raise SmtpError(self.lost or f"connection to {self.where} lost", server=True)
        return [self._replies.popleft() for _ in range(count)]

    def write(self, data: bytes) -> None:
        if not self.usable:
            raise SmtpError(self.lost or f"connection to {self.where} closed", server=True)
        self.transport.write(data)

    async def deliver(self, first: Job, take_next: NextJob) -> None:
        """Deliver ``first``, then whatever ``take_next`` has ready, writing each body with the
        next message's commands. Every job taken is answered before this returns."""
        job: Job | None = first
        self.write(_group(first.envelope))
        while job is not None:
            try:
                problem = await self._group_answer(job.envelope)
            except SmtpError as error:
                job.fail(error)
                return
            if problem is not None:
                job.fail(problem)
                job = take_next() if self.usable else None
                if job is not None:
                    self.write(_group(job.envelope))
                continue
            following = take_next()
            body = message_body(job.envelope.data, job.envelope.crlf)
            self.write(body + (_group(following.envelope) if following else b""))
            try:
                [(code, text)] = await self.replies(1)
            except SmtpError as error:
                job.fail(SmtpError(error.problem + AFTER_DATA, server=True, ambiguous=True))
                if following is not None:
                    following.fail(SmtpError(error.problem, server=True))
                return
            if code == 421:
                self.close()
            if code >= 400:
                job.fail(failure("DATA", code, text))
            else:
                job.done(f"{code} {text}")
            job = following

    async def _group_answer(self, envelope: Envelope) -> SmtpError | None:
        """Read the replies to MAIL, RCPT and DATA; the refusal among them, if any."""
        answers = await self.replies(len(envelope.recipients) + 2)
        (mail_code, mail_text), rcpts, (data_code, data_text) = answers[0], answers[1:-1], answers[-1]
        refused = [(code, text) for code, text in rcpts if code >= 400]
        problem: SmtpError | None = None
        if any(code == 421 for code, _ in answers):
            self.close()
            problem = failure("MAIL", 421, next(t for c, t in answers if c == 421))
        elif mail_code >= 400:
            problem = failure("MAIL", mail_code, mail_text)
        elif refused and len(refused) == len(rcpts):
            problem = failure("RCPT", *refused[0])
        elif data_code != 354:
            problem = failure("DATA", data_code, data_text)
        if problem is not None:
            if data_code == 354:  # the server wants a body we will not send: only closing aborts it
                self.close()
            elif self.usable:
                await self._reset()
        return problem

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


class CommandSession:
    """A session without PIPELINING: one command at a time through aiosmtplib."""

    def __init__(self, client: aiosmtplib.SMTP, where: str) -> None:
        self.client = client
        self.where = where
        self.broken = False

    @property
    def usable(self) -> bool:
        return not self.broken and self.client.is_connected

    async def deliver(self, first: Job, take_next: NextJob) -> None:
        job: Job | None = first
        while job is not None:
            try:
                job.done(await self._deliver(job.envelope))
            except SmtpError as error:
                job.fail(error)
            job = take_next() if self.usable else None

    async def _deliver(self, envelope: Envelope) -> str:
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
            self.client.protocol.write(message_body(envelope.data, envelope.crlf))  # type: ignore[union-attr]
            response = await self.client.protocol.read_response(self.client.timeout)  # type: ignore[union-attr]
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                self.close()
            elif stage != "BODY":
                await self._reset()
            raise failure(stage, exc.code, exc.message) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError, AttributeError) as exc:
            self.close()
            raise SmtpError(f"connection to {self.where} failed: {exc}" + (AFTER_DATA if stage == "BODY" else ""),
                            server=True, ambiguous=stage == "BODY") from exc
        if response.code >= 400:
            if response.code == 421:
                self.close()
            raise failure("DATA", response.code, response.message)
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
