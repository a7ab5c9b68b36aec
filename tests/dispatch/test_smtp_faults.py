"""SMTP failures against a real server that answers 421, 450 and 550 and drops connections.

Every temporary failure is delivered exactly once in the end, every permanent one is refused
(and, through `kairos send`, suppressed), and a message whose connection died after it was
handed over is reported for review, never sent twice. Both the pipelined path and aiosmtplib's
own ``sendmail`` (for servers without PIPELINING) are exercised.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter

import numpy as np
import pytest
from sqlmodel import select

from engine.dispatch import Backoff, Envelope, SmtpTransport, with_policies
from engine.dispatch.breaker import CircuitBreaker
from engine.dispatch.limits import Limits
from engine.dispatch.retry import Retrying
from engine.errors import DispatchError, DispatchPaused, SmtpError
from engine.store import Event, Message, MessageState, Run, RunState, Suppression
from tests.conftest import Project, seed_one_headline, write_config
from tests.dispatch.faulty_smtp import FaultyServer

MESSAGE = b"From: news@kairos.test\r\nSubject: hi\r\n\r\n.leading dot survives\r\nbody\r\n"


def envelope(key: int, address: str) -> Envelope:
    return Envelope(key=key, sender="news@kairos.test", recipients=(address,), data=MESSAGE)


async def send_all(transport: SmtpTransport, addresses: list[str]) -> list[object]:
    stack = with_policies(transport, Limits(), attempts=4, backoff=Backoff(0.01, 0.05), pause_after=50,
                          rng=np.random.default_rng(1))
    try:
        return await asyncio.gather(*(stack.send(envelope(k, a)) for k, a in enumerate(addresses)),
                                    return_exceptions=True)
    finally:
        await stack.close()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "sendmail"])
def test_temporary_failures_are_delivered_exactly_once_and_permanent_ones_refused(pipelining: bool) -> None:
    addresses = [f"{kind}-{n}@example.test" for kind in ("ok", "busy", "closing", "drop", "gone") for n in range(6)]
    with FaultyServer(pipelining=pipelining) as server:
        transport = SmtpTransport(server.host, server.port, max_connections=4)
        results = asyncio.run(send_all(transport, addresses))
        delivered = server.delivered_to()

    outcome = dict(zip(addresses, results, strict=True))
    for address, result in outcome.items():
        if address.startswith("gone-"):
            assert isinstance(result, SmtpError) and result.permanent and result.recipient and result.code == 550
            assert delivered[address] == 0
        else:
            assert not isinstance(result, BaseException), (address, result)
            assert delivered[address] == 1, address
    assert sum(delivered.values()) == 24
    # the message arrived whole, its leading dot restored by the server
    assert b"\r\n.leading dot survives\r\n" in server.delivered[0][1]
    # temporary failures were really retried: two 450s, then success
    assert server.attempts["busy-0@example.test"] == 3


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "sendmail"])
def test_a_connection_lost_after_the_data_is_ambiguous_and_not_retried(pipelining: bool) -> None:
    with FaultyServer(pipelining=pipelining) as server:
        transport = SmtpTransport(server.host, server.port, max_connections=2)
        [result, ok] = asyncio.run(send_all(transport, ["lost-1@example.test", "ok-1@example.test"]))
        delivered = server.delivered_to()
    assert isinstance(result, DispatchError) and result.ambiguous and not result.permanent
    assert delivered["lost-1@example.test"] == 1  # delivered once; the client cannot know, and does not retry
    assert not isinstance(ok, BaseException)


def test_consecutive_server_failures_open_the_breaker_and_stop_touching_the_network() -> None:
    with FaultyServer() as server:
        server.down = True
        transport = SmtpTransport(server.host, server.port, max_connections=1)
        breaker = CircuitBreaker(transport, threshold=3)
        stack = Retrying(breaker, attempts=2, backoff=Backoff(0.01, 0.01), rng=np.random.default_rng(0))

        async def run() -> list[object]:
            results = [await asyncio.gather(stack.send(envelope(k, f"ok-{k}@example.test")),
                                            return_exceptions=True) for k in range(6)]
            await stack.close()
            return [r[0] for r in results]

        results = asyncio.run(run())
        tried = sum(server.attempts.values())
    # message 0: two attempts, two 421s; message 1: a third 421 opens the breaker, its retry is refused
    assert isinstance(results[0], SmtpError) and results[0].code == 421 and results[0].server
    assert all(isinstance(r, DispatchPaused) for r in results[1:])
    assert breaker.open and tried == 3  # after the third 421 nothing reached the server


def test_kairos_send_retries_suppresses_bounces_and_reports_review(tmp_path: pytest.TempPathFactory,
                                                                    project: Project) -> None:
    people = {"ok": 4, "busy": 3, "closing": 2, "drop": 2, "gone": 2, "lost": 1}
    rows = ["id,email"] + [f"{kind}{n},{kind}-{n}@example.test" for kind, count in people.items()
                           for n in range(count)]
    seed_one_headline(project, "\n".join(rows) + "\n")

    with FaultyServer() as server:
        write_config(project.config, project.db_url, server.port)
        with project.config.open("a") as config:
            config.write("retry_backoff = 0.01\nretry_backoff_max = 0.05\n")
        env = {"KAIROS_SECRET": "s3cret", "KAIROS_EMAIL_RETURN_PATH": "bounces@kairos.test"}
        result = project.kairos("send", "news", env=env)
        delivered = server.delivered_to()
        senders = dict(server.delivered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 recipient(s) refused permanently (5xx): recorded as bounces and suppressed" in result.stdout
    assert "1 message(s) lost their connection after being handed over" in result.stdout

    expected = Counter({f"{kind}-{n}@example.test": 1 for kind, count in people.items()
                        if kind != "gone" for n in range(count)})
    assert delivered == expected
    assert b"Hello ok0" in senders["ok-0@example.test"]
    with project.store().session() as session:
        states = {m.recipient_id: m.state for m in session.exec(select(Message)).all()}
        bounces = session.exec(select(Event).where(Event.type == "bounce")).all()
        suppressions = session.exec(select(Suppression)).all()
        run = session.exec(select(Run)).one()
    assert states == {**{f"{k}{n}": MessageState.SENT for k, c in people.items() for n in range(c)},
                      "gone0": MessageState.FAILED, "gone1": MessageState.FAILED, "lost0": MessageState.REVIEW}
    assert sorted(b.recipient_id for b in bounces) == ["gone0", "gone1"]
    assert all(b.data and b.data["kind"] == "hard" and "550" in b.data["detail"] for b in bounces)
    assert sorted((s.recipient_id, s.reason, s.channel) for s in suppressions) == [
        ("gone0", "hard_bounce", "email"), ("gone1", "hard_bounce", "email")]
    assert run.state == RunState.FINISHED


def test_a_silent_server_fails_the_queue_after_one_connection_attempt_per_worker() -> None:
    """A server that accepts TCP and never greets: each queued message must not wait out its own
    connection timeout; once no connection works, the whole queue is answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    transport = SmtpTransport("127.0.0.1", listener.getsockname()[1], max_connections=2, timeout=0.3)

    async def run() -> list[object]:
        results = await asyncio.gather(*(transport.send(envelope(k, f"ok-{k}@example.test")) for k in range(50)),
                                       return_exceptions=True)
        await transport.close()
        return list(results)

    results = asyncio.run(run())
    listener.close()
    thread.join(5)
    for connection in accepted:
        connection.close()
    assert all(isinstance(r, SmtpError) and r.server and "cannot connect" in str(r) for r in results)
    assert len(accepted) <= 2  # one attempt per worker, not one per message
