"""Rate limits and per-domain concurrency around a transport, and SMTP's TLS and AUTH."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.dispatch import Envelope, SmtpTransport
from engine.dispatch.inbox import free_port
from engine.dispatch.limits import Limits, RateLimited, TokenBucket
from engine.errors import SmtpError
from tests.dispatch.certs import LoopbackCA, make_test_ca


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_lets_rate_per_second_through_after_its_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(10.0, burst=3, clock=time, sleep=time.sleep)

    async def run() -> list[float]:
        moments = []
        for _ in range(8):
            await bucket.acquire()
            moments.append(round(time.now, 6))
        return moments

    # three at once (the burst), then one every 1/10 s
    assert asyncio.run(run()) == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def test_campaign_limits_only_lower_the_configured_ones() -> None:
    configured = Limits(rate=100.0, route_rate=10.0, route_concurrency=5)
    assert configured.tightest(Limits(rate=20.0, route_rate=50.0)) == Limits(20.0, 10.0, 5)
    assert Limits().tightest(Limits(rate=3.0)) == Limits(3.0, None, None)


class Recorder:
    """Keeps what arrives and how many DATA transactions per domain overlap at most."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.busy: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        domain = envelope.rcpt_tos[0].rpartition("@")[2]
        with self.lock:
            self.busy[domain] += 1
            self.most[domain] = max(self.most[domain], self.busy[domain])
        await asyncio.sleep(self.hold)  # a slow mailbox, so that concurrent sends overlap here
        with self.lock:
            self.busy[domain] -= 1
            self.received.append((envelope.rcpt_tos[0], envelope.content))
        return "250 OK"


def message(key: int, address: str) -> Envelope:
    return Envelope(key, "news@kairos.test", (address,), b"Subject: hi\r\n\r\nhello\r\n")


def test_per_domain_concurrency_holds_each_destination_to_its_share() -> None:
    recorder = Recorder(hold=0.05)
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        transport = RateLimited(SmtpTransport("127.0.0.1", port, max_connections=12), Limits(route_concurrency=2))
        addresses = [f"u{n}@{domain}" for n in range(8) for domain in ("a.test", "b.test", "c.test")]

        async def run() -> None:
            await asyncio.gather(*(transport.send(message(k, a)) for k, a in enumerate(addresses)))
            await transport.close()

        asyncio.run(run())
    finally:
        controller.stop()
    assert len(recorder.received) == 24
    assert recorder.most == Counter({"a.test": 2, "b.test": 2, "c.test": 2})


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("smtp-ca"))


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"kairos", b"hunter2")
    return AuthResult(success=ok, handled=False)


# aiosmtpd counts only STARTTLS as TLS and warns about AUTH on its implicit-TLS port, which is encrypted
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_smtp_over_starttls_or_implicit_tls_with_auth_reuses_one_connection(ca: LoopbackCA, mode: str) -> None:
    recorder = Recorder()
    port = free_port()
    context = ca.server_context()
    tls: dict[str, Any] = {"tls_context": context, "require_starttls": True} if mode == "starttls" \
        else {"ssl_context": context}
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_required=True, auth_require_tls=mode == "starttls", server_hostname="localhost",
                            **tls)
    controller.start()
    try:
        transport = SmtpTransport("127.0.0.1", port, max_connections=1, starttls=mode == "starttls",
                                  tls=mode == "tls", username="kairos", password="hunter2", ca_file=ca.ca_file)
        wrong = SmtpTransport("127.0.0.1", port, starttls=mode == "starttls", tls=mode == "tls",
                              username="kairos", password="wrong", ca_file=ca.ca_file)
        untrusted = SmtpTransport("127.0.0.1", port, starttls=mode == "starttls", tls=mode == "tls",
                                  username="kairos", password="hunter2")

        async def run() -> tuple[BaseException | None, BaseException | None]:
            for key in range(3):
                await transport.send(message(key, f"u{key}@a.test"))
            await transport.close()
            refused = (await asyncio.gather(wrong.send(message(9, "x@a.test")), return_exceptions=True))[0]
            unknown = (await asyncio.gather(untrusted.send(message(9, "x@a.test")), return_exceptions=True))[0]
            return refused if isinstance(refused, BaseException) else None, \
                unknown if isinstance(unknown, BaseException) else None

        refused, unknown = asyncio.run(run())
    finally:
        controller.stop()
    assert [address for address, _ in recorder.received] == ["u0@a.test", "u1@a.test", "u2@a.test"]
    assert transport.connections_opened == 1
    assert isinstance(refused, SmtpError) and "authentication refused" in str(refused) and refused.server
    assert isinstance(unknown, SmtpError) and "CERTIFICATE_VERIFY_FAILED" in str(unknown)
