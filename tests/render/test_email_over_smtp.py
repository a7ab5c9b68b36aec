"""`kairos send` to a real SMTP server on loopback, with DKIM: what arrives passes for a serious sender.

The received bytes are parsed with the email package; the DKIM signature is checked by dkimpy
with the public key served by a test dnsfunc; the List-Unsubscribe URL is POSTed to the real
tracking endpoint and suppresses the recipient.
"""

from __future__ import annotations

import re
import textwrap
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import dkim
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlmodel import select

from engine.cli.common import with_tracking_secret
from engine.config import DkimSettings, Settings
from engine.render.dkim import load_signer
from engine.render.tokens import TokenKind, token_key, verify_token
from engine.render.verp import parse_verp
from engine.store import Message, MessageState, Run, Suppression
from engine.track.app import tracking_app
from tests.conftest import TEST_SECRET, Project, SmtpServer, serving, with_secret
from tests.schedule.test_send_smtp import seed_project

TRACK = "https://track.kairos.test"


def configure(project: Project, smtp_port: int, key_file: str = "dkim/k1.pem") -> None:
    project.config.write_text(textwrap.dedent(f"""
        [database]
        url = "{project.db_url}"

        [email]
        transport = "smtp"
        host = "127.0.0.1"
        port = {smtp_port}
        from = "Kairos Test <news@kairos.test>"
        return_path = "bounces@mail.kairos.test"
        unsubscribe_mailto = "unsubscribe@kairos.test"

        [email.dkim]
        domain = "kairos.test"
        selector = "k1"
        private_key_file = "{key_file}"

        [tracking]
        base_url = "{TRACK}"

        [sending]
        batch_size = 50
    """).lstrip())


def write_key(project: Project) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (project.path / "dkim").mkdir(exist_ok=True)
    (project.path / "dkim" / "k1.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_sent_mail_is_structured_signed_unsubscribable_and_bounce_matchable(project: Project,
                                                                           smtp_server: SmtpServer) -> None:
    seed_project(project)
    write_key(project)
    configure(project, smtp_server.port)
    project.kairos("send", "news", "--seed", "3", check=True)
    assert len(smtp_server.messages) == 7

    signer = load_signer(DkimSettings("kairos.test", "k1", project.path / "dkim" / "k1.pem"))

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"k1._domainkey.kairos.test."
        return signer.dns_record().encode()

    key = token_key(TEST_SECRET.encode())
    with project.store().session() as session:
        rows = {m.id: m for m in session.exec(select(Message).where(Message.state == MessageState.SENT)).all()}
    for received in smtp_server.messages:
        raw = received.data
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert raw.startswith(b"DKIM-Signature: ")
        assert dkim.verify(raw, dnsfunc=dnsfunc), "DKIM signature does not verify"
        signature = re.sub(rb"\s+", b"", raw.split(b"\r\nFrom: ", 1)[0])
        assert b"h=from:to:subject:date:message-id:list-unsubscribe:list-unsubscribe-post" in signature
        assert b"a=rsa-sha256" in signature and b"d=kairos.test" in signature
        body_at = raw.index(b"\r\n\r\n") + 4
        assert not dkim.verify(raw[:body_at] + raw[body_at:].replace(b"Name", b"Nome", 1), dnsfunc=dnsfunc)
        assert not dkim.verify(raw.replace(b"\r\nTo: ", b"\r\nTo: x", 1), dnsfunc=dnsfunc)

        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        assert parsed.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        assert parsed["From"] == "Kairos Test <news@kairos.test>"
        assert parsed["To"] == received.rcpt_tos[0]
        assert parsedate_to_datetime(parsed["Date"]).tzinfo is not None
        assert parsed["Message-ID"].endswith("@kairos.test>")
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https_target, mailto_target = re.findall(r"<([^>]+)>", parsed["List-Unsubscribe"])
        assert https_target.startswith(f"{TRACK}/u/") and mailto_target.startswith("mailto:unsubscribe@kairos.test")

        # VERP: the envelope sender names this message, signed; the bounce domain is the configured one.
        message_key = parse_verp(received.mail_from, TEST_SECRET.encode())
        assert message_key is not None and received.mail_from.endswith("@mail.kairos.test")
        row = rows[message_key]
        assert row.header_message_id == parsed["Message-ID"]
        assert f"{row.recipient_id}@example.test" == received.rcpt_tos[0]

        # Every link is tracked with a token for this recipient and message; the pixel is there.
        html_part = parsed.get_body(preferencelist=("html",))
        assert html_part is not None
        html = html_part.get_content()
        hrefs = re.findall(r'<a\b[^>]*href="([^"]+)"', html)
        clicks = [h for h in hrefs if h.startswith(f"{TRACK}/c/")]
        assert len(clicks) == 2 and all(h.startswith(f"{TRACK}/") for h in hrefs)
        for href in clicks:
            token = verify_token(key, href.rsplit("/", 1)[1], TokenKind.CLICK)
            assert token is not None and token.message_key == message_key
            assert token.recipient_id == row.recipient_id and token.item_id.startswith("n")
            assert "utm_source=kairos&utm_medium=email&utm_campaign=news" in token.url
        assert re.search(rf'<img src="{re.escape(TRACK)}/o/[\w.-]+" width="1" height="1"', html)
        assert 'style="' in html  # CSS inlined

    # RFC 8058: a mailbox provider POSTs to the List-Unsubscribe URL; the recipient is suppressed.
    first = message_from_bytes(smtp_server.messages[0].data, policy=policy.default)
    unsubscribe_url = re.findall(r"<([^>]+)>", str(first["List-Unsubscribe"]))[0]
    recipient = parseaddr(str(first["To"]))[1].split("@")[0]
    store = project.store()
    sent_at = parsedate_to_datetime(first["Date"])
    with serving(tracking_app(with_secret(TEST_SECRET.encode()), store, lambda: sent_at)) as base:
        answer = httpx.post(unsubscribe_url.replace(TRACK, base), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    with store.session() as session:
        suppressed = session.exec(select(Suppression.recipient_id)).all()
    assert suppressed == [recipient]


def test_without_a_tracking_secret_links_are_signed_with_the_one_kept_in_the_database(
        project: Project, smtp_server: SmtpServer) -> None:
    seed_project(project)
    configure(project, smtp_server.port)
    write_key(project)
    result = project.kairos("send", "news", env={"KAIROS_SECRET": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KAIROS_SECRET is not set; signing tracked links with the secret kept in the database" in result.stderr
    assert smtp_server.messages

    # A tracking server on the same database, also without the variable, accepts those links;
    # one built with another secret does not.
    first = message_from_bytes(smtp_server.messages[0].data, policy=policy.default)
    html_part = first.get_body(preferencelist=("html",))
    assert html_part is not None
    click = re.findall(rf'href="({re.escape(TRACK)}/c/[^"]+)"', html_part.get_content())[0]
    store = project.store()
    settings = with_tracking_secret(Settings.load(project.config, environ={}), store)
    assert settings.tracking.secret is not None and settings.tracking.secret != TEST_SECRET.encode()
    with serving(tracking_app(settings, store)) as base:
        assert httpx.get(click.replace(TRACK, base)).status_code == 302
    with serving(tracking_app(with_secret(TEST_SECRET.encode()), store)) as base:
        assert httpx.get(click.replace(TRACK, base)).status_code == 404


def test_a_bad_dkim_key_file_is_bad_input_naming_file_and_field(project: Project, smtp_server: SmtpServer) -> None:
    seed_project(project)
    (project.path / "dkim").mkdir()
    (project.path / "dkim" / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    configure(project, smtp_server.port, key_file="dkim/broken.pem")
    result = project.kairos("send", "news")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{project.path / 'dkim' / 'broken.pem'}: email.dkim.private_key_file: " in result.stderr
    assert "Traceback" not in result.stderr
    with project.store().session() as session:
        assert session.exec(select(Run)).all() == []
    assert smtp_server.messages == []


def test_a_template_that_does_not_compile_stops_the_send_before_anything_is_stored(project: Project,
                                                                                   smtp_server: SmtpServer) -> None:
    seed_project(project)
    project.write("templates/digest.txt", """
        Hello
        {% for item in items %}{{ item.title }
    """)
    result = project.kairos("send", "news")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{project.path / 'templates' / 'digest.txt'}:2: " in result.stderr
    assert "Traceback" not in result.stderr
    with project.store().session() as session:
        assert session.exec(select(Run)).all() == []
    assert smtp_server.messages == []


def test_a_template_failing_for_one_recipient_fails_that_message_only(project: Project,
                                                                      smtp_server: SmtpServer) -> None:
    seed_project(project)
    project.write("templates/digest.txt", """
        Hello {{ recipient.attributes.first_name }}
        {% if recipient.id == "r5" %}{{ recipient.attributes.nickname }}{% endif %}
    """)
    result = project.kairos("send", "news", "--seed", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{project.path / 'templates' / 'digest.txt'}:2: undefined value" in result.stderr
    with project.store().session() as session:
        states = {m.recipient_id: (m.state, m.last_error) for m in session.exec(select(Message)).all()}
    assert states["r5"][0] == MessageState.FAILED and "nickname" in (states["r5"][1] or "")
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        f"{r}@example.test" for r in ("r1", "r2", "r8", "r10", "r11", "r7"))
