"""The fast MIME builder: what the email package reads back from its bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from engine.errors import RenderError
from engine.render.mime import address_header, build_email

DATE = datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def build(subject: str = "Hello", text: str = "Hi\nthere\n", html: str | None = "<p>Hi</p>") -> bytes:
    return build_email(from_header=address_header("Kairos News <news@kairos.test>"), to="ada@example.test",
                       subject=subject, text=text, html=html, header_message_id="<news.1.7@kairos.test>", date=DATE,
                       extra_headers=[("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]).as_bytes()


def test_multipart_alternative_with_text_first_and_html_last() -> None:
    message = parse(build(text="Plain words\n", html="<p>Rich <b>words</b> ünïcode</p>"))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == "Plain words\n"
    assert parts[1].get_content().strip() == "<p>Rich <b>words</b> ünïcode</p>"
    assert all(p.get_content_charset() == "utf-8" for p in parts)


def test_every_line_ends_in_crlf_and_stays_short() -> None:
    long_line = "word " * 60 + "https://example.test/" + "x" * 120
    data = build(subject="A subject " * 12, text=f"{long_line}\nnext\n", html=f"<p>{long_line}</p>")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    message = parse(data)
    assert message["Subject"] == ("A subject " * 12).strip()
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and long_line in body.get_content()


def test_headers_identify_the_message_and_its_date() -> None:
    message = parse(build())
    assert message["Message-ID"] == "<news.1.7@kairos.test>"
    assert parsedate_to_datetime(message["Date"]) == DATE
    assert message["From"] == "Kairos News <news@kairos.test>"
    assert message["To"] == "ada@example.test"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("subject", ["Ünïcödé picks for you", "日本語のニュースレター " * 6,
                                     "Émoji 🎉 " + "long " * 30])
def test_non_ascii_subjects_are_rfc2047_encoded_and_read_back(subject: str) -> None:
    data = build(subject=subject)
    raw_subject = data.split(b"\r\nSubject: ", 1)[1].split(b"\r\nDate:", 1)[0]
    assert raw_subject.isascii() and raw_subject.startswith(b"=?utf-8?b?")
    assert parse(data)["Subject"] == " ".join(subject.split())


def test_non_ascii_sender_names_are_encoded() -> None:
    header = address_header("Küchen Néws <news@kairos.test>")
    assert header.isascii() and header.endswith("<news@kairos.test>")


@pytest.mark.parametrize("address", ["ada@example.test", "a.b+tag@mail.example-1.test", "o'brien@example.ie",
                                     "x_y=z@localhost"])
def test_a_plain_address_is_its_own_header(address: str) -> None:
    assert address_header(address) == address == parseaddr(address)[1] and parseaddr(address)[0] == ""


@pytest.mark.parametrize("address", ["", "no-at-sign", "a b@example.test", "x@example.test\r\nBcc: all@example.test",
                                     "a..b@example.test\n"])
def test_an_undeliverable_address_is_a_render_error(address: str) -> None:
    with pytest.raises(RenderError):
        build_email(from_header="news@kairos.test", to=address, subject="s", text="t", html=None,
                    header_message_id="<a@b>", date=DATE)


def test_a_text_only_message_is_not_multipart() -> None:
    message = parse(build(html=None))
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == "Hi\nthere\n"
