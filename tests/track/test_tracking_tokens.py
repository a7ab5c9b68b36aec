"""Tracked links, the pixel and one-click unsubscribe: a forged or altered token records nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from engine.render.tokens import TokenKind, TrackingToken, sign_token, token_key, verify_token
from engine.store import Event, Message, MessageState, Recipient, Run, Store, Suppression
from engine.track.app import tracking_app
from tests.conftest import serving, with_secret

SECRET = b"tracking-secret"
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'track.db'}")
    with opened.session() as session:
        session.add(Recipient(id="r1", email="r1@example.test"))
        session.add(Run(id=1, campaign="news", spec_hash="x"))
        session.add(Message(id=7, run_id=1, campaign="news", recipient_id="r1", state=MessageState.SENT,
                            send_at=NOW, channel="email", variant="a"))
    yield opened
    opened.dispose()


def click_token(key: bytes = token_key(SECRET), **changes: object) -> str:
    fields: dict[str, object] = {"kind": TokenKind.CLICK, "message_key": 7, "recipient_id": "r1", "link": 0,
                                 "item_id": "n1", "url": "https://news.example.test/1?utm_source=kairos"}
    fields.update(changes)
    return sign_token(key, TrackingToken(**fields))  # type: ignore[arg-type]


def events(store: Store) -> list[Event]:
    with store.session() as session:
        return list(session.exec(select(Event)).all())


def test_a_valid_click_redirects_and_is_recorded_for_its_item(store: Store) -> None:
    with serving(tracking_app(with_secret(SECRET), store, lambda: NOW)) as base:
        response = httpx.get(f"{base}/c/{click_token()}")
    assert response.status_code == 302
    assert response.headers["location"] == "https://news.example.test/1?utm_source=kairos"
    [event] = events(store)
    assert (event.type, event.recipient_id, event.item_id, event.message_id, event.campaign, event.variant) == \
        ("click", "r1", "n1", 7, "news", "a")


def test_forged_and_altered_tokens_are_rejected_and_record_nothing(store: Store) -> None:
    genuine = click_token()
    payload, _, signature = genuine.partition(".")
    flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
    attempts = {
        "altered payload": f"{flipped}.{signature}",
        "another message, old signature": click_token(message_key=8).partition(".")[0] + "." + signature,
        "another destination, old signature": click_token(url="https://evil.example/").partition(".")[0]
        + "." + signature,
        "signed with another key": click_token(key=token_key(b"guessed secret")),
        "no signature": payload,
        "garbage": "not-a-token",
        "open token on the click URL": sign_token(token_key(SECRET), TrackingToken(TokenKind.OPEN, 7, "r1")),
        "valid signature, message of someone else": click_token(recipient_id="r2"),
        "valid signature, no such message": click_token(message_key=999),
    }
    with serving(tracking_app(with_secret(SECRET), store, lambda: NOW)) as base, httpx.Client(base_url=base) as client:
        for name, token in attempts.items():
            response = client.get(f"/c/{token}")
            assert response.status_code == 404, name
            assert "location" not in response.headers, name
        assert client.get(f"/o/{click_token()}").status_code == 404
        assert client.post(f"/u/{click_token()}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert events(store) == []
    with store.session() as session:
        assert session.exec(select(Suppression)).all() == []


def test_one_click_unsubscribe_suppresses_the_recipient(store: Store) -> None:
    token = sign_token(token_key(SECRET), TrackingToken(TokenKind.UNSUBSCRIBE, 7, "r1"))
    with serving(tracking_app(with_secret(SECRET), store, lambda: NOW)) as base, httpx.Client(base_url=base) as client:
        page = client.get(f"/u/{token}")
        assert page.status_code == 200 and "Unsubscribe" in page.text
        assert events(store) == []  # looking at the page (or a link scanner fetching it) is not unsubscribing
        done = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert [e.type for e in events(store)] == ["unsubscribe"]
    with store.session() as session:
        [suppression] = session.exec(select(Suppression)).all()
    assert (suppression.recipient_id, suppression.channel, suppression.reason) == ("r1", "email", "unsubscribe")


def test_tokens_cannot_be_enumerated_from_sequential_message_numbers() -> None:
    key = token_key(SECRET)
    tokens = [sign_token(key, TrackingToken(TokenKind.OPEN, n, f"r{n}")) for n in range(50)]
    signatures = {token.partition(".")[2] for token in tokens}
    assert len(signatures) == 50
    # Knowing tokens of messages 0..49 gives nothing for message 50: every signature must be recomputed.
    candidate = tokens[49].replace(tokens[49].partition(".")[0],
                                   sign_token(b"x", TrackingToken(TokenKind.OPEN, 50, "r50")).partition(".")[0])
    assert verify_token(key, candidate) is None
    assert verify_token(key, tokens[10]) == TrackingToken(TokenKind.OPEN, 10, "r10")


@pytest.mark.parametrize("key", [b"k", token_key(SECRET), b"b" * 64, b"long" * 40], ids=["short", "derived", "block",
                                                                                    "longer-than-a-block"])
def test_a_token_is_signed_with_hmac_sha256_of_its_payload(key: bytes) -> None:
    token = TrackingToken(TokenKind.CLICK, 7, "r1", 2, "n1", "https://news.example.test/\u00e9?a=1&b=2")
    text = sign_token(key, token)
    encoded, _, signature = text.partition(".")
    payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    assert payload == "\x1f".join(("1", "c", "7", "r1", "2", "n1", token.url)).encode()
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert verify_token(key, text) == token and verify_token(key + b"!", text) is None


def test_a_valid_open_pixel_answers_a_gif_and_records_the_open(store: Store) -> None:
    token = sign_token(token_key(SECRET), TrackingToken(TokenKind.OPEN, 7, "r1"))
    with serving(tracking_app(with_secret(SECRET), store, lambda: NOW)) as base:
        response = httpx.get(f"{base}/o/{token}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    assert [(e.type, e.recipient_id, e.message_id) for e in events(store)] == [("open", "r1", 7)]
