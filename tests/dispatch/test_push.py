"""Push transports against loopback stand-ins that enforce each provider's documented format,
authentication and size limit (tests/dispatch/push_standins.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from py_vapid import Vapid02

from engine.dispatch.apns import ApnsTransport
from engine.dispatch.base import PushEnvelope, PushNotification
from engine.dispatch.fcm import FcmTransport, ServiceAccount
from engine.dispatch.retry import Backoff, Retrying
from engine.dispatch.webpush import WebPushTransport
from engine.errors import PushError
from tests.dispatch.certs import LoopbackCA, make_test_ca
from tests.dispatch.push_standins import ApnsStandIn, FcmStandIn, WebPushStandIn

NOTE = PushNotification(title="Three picks for you", body="Héllo Ada, tech is up", url="https://news.example.test/1",
                        data=(("campaign", "news"),), ttl=3600, collapse_key="news")


class Clock:
    """A clock tests move by hand, shared by a transport and its stand-in."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


def envelope(token: str, key: int = 1, note: PushNotification = NOTE, platform: str = "fcm") -> PushEnvelope:
    return PushEnvelope(key=key, device_id=key, platform=platform, token=token, notification=note)


class Waits:
    """Records the waits a retry asked for instead of sleeping them."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def retrying(transport: object, waits: Waits) -> Retrying[PushEnvelope]:
    return Retrying(transport, attempts=3, backoff=Backoff(0.01, 0.02),  # type: ignore[arg-type]
                    rng=np.random.default_rng(0), sleep=waits)


@pytest.fixture
def fcm(ca: LoopbackCA) -> Iterator[tuple[FcmStandIn, FcmTransport, Clock]]:
    clock = Clock()
    with FcmStandIn(ca, token_lifetime=600, clock=clock) as server:
        assert isinstance(server, FcmStandIn)
        account = ServiceAccount(**{k: v for k, v in server.service_account().items()
                                    if k in ("client_email", "private_key", "private_key_id", "token_uri")})
        transport = FcmTransport(server.project_id, account, endpoint=server.origin, ca_file=ca.ca_file, clock=clock)
        yield server, transport, clock


def test_fcm_sends_the_v1_message_with_a_cached_oauth_token_and_refreshes_it(fcm: tuple) -> None:
    server, transport, clock = fcm

    async def run() -> None:
        for key in range(3):
            await transport.send(envelope(f"ok-{key}", key))
        assert transport.tokens_fetched == 1  # cached
        clock.now += 560  # within a minute of the 600 s lifetime: refreshed before it expires
        await transport.send(envelope("ok-3", 3))
        await transport.close()

    asyncio.run(run())
    assert transport.tokens_fetched == 2
    assert [m["token"] for m in server.delivered] == ["ok-0", "ok-1", "ok-2", "ok-3"]
    message = server.delivered[0]
    assert message["notification"] == {"title": NOTE.title, "body": NOTE.body}
    assert message["data"] == {"campaign": "news", "url": NOTE.url}
    assert message["android"] == {"priority": "HIGH", "ttl": "3600s", "collapse_key": "news"}


def test_fcm_errors_deactivate_fail_or_retry_as_documented(fcm: tuple) -> None:
    server, transport, _clock = fcm
    waits = Waits()
    stack = retrying(transport, waits)

    async def run() -> list[object]:
        results = [await asyncio.gather(stack.send(envelope(token)), return_exceptions=True)
                   for token in ("gone-1", "invalid-1", "busy-1", "down-1")]
        await stack.close()
        return [r[0] for r in results]

    gone, invalid, busy, down = asyncio.run(run())
    assert isinstance(gone, PushError) and gone.device_gone and gone.reason == "UNREGISTERED"
    assert isinstance(invalid, PushError) and invalid.permanent and not invalid.device_gone
    assert invalid.reason == "INVALID_ARGUMENT" and "not a valid FCM registration token" in str(invalid)
    assert not isinstance(busy, BaseException) and not isinstance(down, BaseException)
    assert waits.asked == [1.0, 1.0]  # Retry-After honoured (longer than the backoff)
    assert [m["token"] for m in server.delivered] == ["busy-1", "down-1"]


def test_fcm_refuses_a_message_over_4kb(fcm: tuple) -> None:
    server, transport, _clock = fcm
    big = PushNotification(title="t", body="x" * 5000)

    async def run() -> BaseException | None:
        try:
            await transport.send(envelope("ok-big", note=big))
        except PushError as exc:
            return exc
        finally:
            await transport.close()
        return None

    error = asyncio.run(run())
    assert isinstance(error, PushError) and error.permanent and "too big" in str(error)
    assert server.delivered == []


@pytest.fixture
def apns(ca: LoopbackCA) -> Iterator[tuple[ApnsStandIn, ApnsTransport, Clock]]:
    clock = Clock()
    with ApnsStandIn(ca, clock=clock) as server:
        assert isinstance(server, ApnsStandIn)
        transport = ApnsTransport(server.team_id, server.key_id, server.signing_key_pem(), server.topic,
                                  endpoint=server.origin, ca_file=ca.ca_file, clock=clock)
        yield server, transport, clock


def test_apns_over_http2_with_headers_and_a_token_renewed_before_the_hour(apns: tuple) -> None:
    server, transport, clock = apns
    token = "ok" + "ab" * 31

    async def run() -> None:
        await transport.send(envelope(token, platform="apns"))
        clock.now += 30 * 60
        await transport.send(envelope(token, platform="apns"))  # same JWT: no needless renewal
        clock.now += 25 * 60  # 55 minutes after issue: renewed, never used past the hour
        await transport.send(envelope(token, platform="apns"))
        await transport.close()

    asyncio.run(run())
    assert all(r.http_version == "2" for r in server.requests)
    assert transport.tokens_issued == 2 and len(server.provider_tokens) == 2
    assert len(server.delivered) == 3
    _token, headers, payload = server.delivered[0]
    assert headers["apns-topic"] == "com.example.kairos" and headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10" and headers["apns-collapse-id"] == "news"
    assert int(headers["apns-expiration"]) == 1_800_000_000 + 3600
    assert payload == {"aps": {"alert": {"title": NOTE.title, "body": NOTE.body}}, "campaign": "news",
                       "url": NOTE.url}


def test_apns_errors_deactivate_fail_or_retry_as_documented(apns: tuple) -> None:
    server, transport, _clock = apns
    waits = Waits()
    stack = retrying(transport, waits)
    big = PushNotification(title="t", body="x" * 5000)

    async def run() -> list[object]:
        results = []
        for token, note in (("gone" + "cd" * 30, NOTE), ("not-hex", NOTE), ("busy" + "ef" * 30, NOTE),
                            ("ok" + "01" * 31, big)):
            results.append((await asyncio.gather(stack.send(envelope(token, note=note, platform="apns")),
                                                 return_exceptions=True))[0])
        await stack.close()
        return results

    gone, bad, busy, too_big = asyncio.run(run())
    assert isinstance(gone, PushError) and gone.device_gone and gone.status == 410
    assert isinstance(bad, PushError) and bad.device_gone and bad.reason == "BadDeviceToken"
    assert not isinstance(busy, BaseException) and len(waits.asked) == 1
    assert isinstance(too_big, PushError) and too_big.permanent and too_big.reason == "PayloadTooLarge"
    assert [t for t, _h, _p in server.delivered] == ["busy" + "ef" * 30]


@pytest.fixture
def webpush(ca: LoopbackCA, tmp_path: Path) -> Iterator[tuple[WebPushStandIn, WebPushTransport]]:
    vapid = Vapid02()
    vapid.generate_keys()
    with WebPushStandIn(ca) as server:
        assert isinstance(server, WebPushStandIn)
        yield server, WebPushTransport(vapid, "mailto:ops@kairos.test", ca_file=ca.ca_file)


def test_webpush_payload_decrypts_to_what_was_rendered(webpush: tuple) -> None:
    server, transport = webpush
    subscriptions = [server.subscribe("ok"), server.subscribe("gone"), server.subscribe("busy")]
    waits = Waits()
    stack = retrying(transport, waits)

    async def run() -> list[object]:
        results = await asyncio.gather(*(stack.send(envelope(s, k, platform="webpush"))
                                         for k, s in enumerate(subscriptions)), return_exceptions=True)
        await stack.close()
        return list(results)

    ok, gone, busy = asyncio.run(run())
    assert not isinstance(ok, BaseException) and not isinstance(busy, BaseException)
    assert isinstance(gone, PushError) and gone.device_gone and gone.status == 410
    assert waits.asked == [1.0]
    assert len(server.decrypted) == 2
    for _name, payload, headers in server.decrypted:
        assert payload == {"title": NOTE.title, "body": NOTE.body, "url": NOTE.url, "data": {"campaign": "news"}}
        assert headers["ttl"] == "3600" and headers["urgency"] == "high"
    assert json.loads(subscriptions[0])["endpoint"].startswith(server.origin)
