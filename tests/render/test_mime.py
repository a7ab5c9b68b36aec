"""The fast MIME builder: what the email package reads back from its bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from engine.dispatch.smtp_session import message_body
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


def test_every_line_ends_in_crlf_and_headers_stay_short() -> None:
    long_line = "word " * 60 + "https://example.test/" + "x" * 120
    data = build(subject="A subject " * 12, text=f"{long_line}\nnext\n", html=f"<p>{long_line}</p>")
    assert b"\n" not in data.replace(b"\r\n", b"")
    head, _, body = data.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert max(len(line) for line in body.split(b"\r\n")) <= 998
    message = parse(data)
    assert message["Subject"] == ("A subject " * 12).strip()
    body_part = message.get_body(preferencelist=("plain",))
    assert body_part is not None and long_line in body_part.get_content()


def parts(data: bytes) -> list[tuple[str, str]]:
    """(Content-Transfer-Encoding, decoded content) of each part, text first."""
    return [(str(part["Content-Transfer-Encoding"]), part.get_content().replace("\r\n", "\n"))
            for part in parse(data).iter_parts()]


def test_ascii_bodies_with_lines_within_998_octets_go_as_they_are() -> None:
    link = "https://t.example.test/c/" + "A" * 300
    html = f'<p class="x">Hi =</p>\n<a href="{link}">read</a>\n'
    data = build(text=f"Hi = there\n{link}\n", html=html)
    assert parts(data) == [("7bit", f"Hi = there\n{link}\n"), ("7bit", html)]
    assert html.replace("\n", "\r\n").encode() in data  # neither rewritten nor grown


@pytest.mark.parametrize("text", [
    "caf\u00e9 ol\u00e9\n",                           # not ASCII
    "x" * 999 + "\n",                                  # a line over 998 octets
    "a NUL\0 byte\n",
], ids=["non-ascii", "long-line", "nul"])
def test_other_bodies_are_quoted_printable(text: str) -> None:
    data = build(text=text, html=f"<p>{text}</p>")
    (text_encoding, text_content), (html_encoding, html_content) = parts(data)
    assert text_encoding == html_encoding == "quoted-printable"
    assert text_content == text and html_content == f"<p>{text}</p>\n"
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_a_lone_carriage_return_is_a_line_end() -> None:
    data = build(text="one\rtwo\r\nthree\n", html=None)
    assert b"one\r\ntwo\r\nthree\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert parse(data).get_content().replace("\r\n", "\n") == "one\ntwo\nthree\n"


def test_a_part_is_quoted_printable_when_it_contains_the_boundary() -> None:
    data = build()
    boundary = parse(data).get_boundary()
    assert boundary is not None
    sneaky = f"--{boundary}\nContent-Type: text/html\n\n<p>injected</p>\n"
    (text_encoding, text_content), (html_encoding, html_content) = parts(build(text=sneaky, html="<p>Hi</p>"))
    assert (text_encoding, html_encoding) == ("quoted-printable", "7bit")
    assert text_content == sneaky and html_content.strip() == "<p>Hi</p>"


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


@pytest.mark.parametrize("text", [
    "one\rtwo\r\nthree\nfour",                         # every kind of line end, none at the end
    "caf\u00e9\rol\u00e9\r\n\u00fcber\n",              # the same through quoted-printable
    "x" * 999 + "\r" + "y" * 5 + "\n",                 # a long line, soft line breaks
    "a NUL\0 and a lone CR\r",
], ids=["ascii", "non-ascii", "long-line", "nul"])
def test_the_only_line_ends_are_crlf(text: str) -> None:
    # What the pump promises the SMTP transport (Envelope.crlf), which then skips its own scan.
    data = build(subject="Line\rends\nin a subject", text=text, html=f"<p>{text}</p>")
    line_ends = data.count(b"\r\n")
    assert data.count(b"\r") == data.count(b"\n") == line_ends
    assert message_body(data, crlf=True) == message_body(data)
