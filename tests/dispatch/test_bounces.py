"""`kairos import bounces PATH`: RFC 3464 reports from a Maildir or an mbox, matched through the
VERP address the message was sent from (or its Message-ID), recorded and suppressed."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlmodel import select

from engine.store import Event, Message, Suppression
from tests.conftest import Project, SmtpServer
from tests.schedule.test_send_smtp import seed_project

ENV = {"KAIROS_SECRET": "bounce-secret", "KAIROS_EMAIL_RETURN_PATH": "bounces@kairos.test"}


def dsn(to: str, recipient: str, action: str, status: str, original_headers: str,
        boundary: str = "b0und") -> bytes:
    """A delivery status notification as Postfix writes one."""
    return f"""From: MAILER-DAEMON@mx.example.test (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.test
Arrival-Date: Mon, 23 Nov 2026 09:00:00 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {status[0]}50 {status} mailbox unavailable

--{boundary}
Content-Type: text/rfc822-headers

{original_headers}
--{boundary}--
""".replace("\n", "\r\n").encode()


def sent(project: Project, smtp_server: SmtpServer) -> dict[str, tuple[str, str]]:
    """recipient -> (envelope sender, Message-ID) of what the server received."""
    project.kairos("send", "news", "--seed", "3", check=True, env=ENV)
    with project.store().session() as session:
        messages = {m.recipient_id: m for m in session.exec(select(Message)).all()}
    by_address = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.messages}
    return {r: (by_address[f"{r}@example.test"], str(m.header_message_id))
            for r, m in messages.items() if m.header_message_id}


def test_bounces_import_from_a_maildir_match_by_verp_or_message_id(project: Project,
                                                                   smtp_server: SmtpServer) -> None:
    seed_project(project)
    envelope = sent(project, smtp_server)
    assert envelope["r1"][0].startswith("bounces+m") and envelope["r1"][0].endswith("@kairos.test")
    forged = envelope["r8"][0].rsplit(".", 1)[0][:-10] + "0000000000@kairos.test"

    box = mailbox.Maildir(str(project.path / "bounces"), create=True)
    box.add(dsn(envelope["r1"][0], "r1@example.test", "failed", "5.1.1", "Subject: x\r\n"))
    box.add(dsn(envelope["r2"][0], "r2@example.test", "delayed", "4.4.1", "Subject: x\r\n"))
    box.add(dsn("bounces@kairos.test", "r5@example.test", "failed", "5.2.1",
                f"Message-ID: {envelope['r5'][1]}\r\nSubject: x\r\n"))
    box.add(dsn(forged, "r8@example.test", "failed", "5.1.1", "Subject: x\r\n"))
    box.add(b"From: someone@example.test\r\nTo: bounces@kairos.test\r\nSubject: Out of office\r\n\r\nAway.\r\n")

    result = project.kairos("import", "bounces", "bounces", check=True, env=ENV)
    assert ("read 5 message(s) from bounces: 4 delivery status report(s); 2 hard bounce(s) (2 address(es) newly "
            "suppressed), 1 soft bounce(s), 1 report(s) matched no message") in result.stdout

    with project.store().session() as session:
        bounces = {(e.recipient_id, (e.data or {}).get("kind")) for e in
                   session.exec(select(Event).where(Event.type == "bounce")).all()}
        suppressed = {(s.recipient_id, s.reason) for s in session.exec(select(Suppression)).all()}
    assert bounces == {("r1", "hard"), ("r2", "soft"), ("r5", "hard")}
    assert suppressed == {("r1", "hard_bounce"), ("r5", "hard_bounce")}

    again = project.kairos("import", "bounces", "bounces", check=True, env=ENV)
    assert "(0 address(es) newly suppressed)" in again.stdout
    with project.store().session() as session:
        assert len(session.exec(select(Event).where(Event.type == "bounce")).all()) == 3

    # the next run does not write to the hard-bounced addresses
    before = len(smtp_server.messages)
    project.kairos("send", "news", "--seed", "3", check=True, env=ENV)
    second = {m.rcpt_tos[0] for m in smtp_server.messages[before:]}
    assert "r1@example.test" not in second and "r5@example.test" not in second
    assert "r2@example.test" in second


def test_a_malformed_report_in_an_mbox_stops_the_import_and_stores_nothing(project: Project,
                                                                           smtp_server: SmtpServer) -> None:
    seed_project(project)
    envelope = sent(project, smtp_server)
    path = project.path / "bounces.mbox"
    box = mailbox.mbox(str(path), create=True)
    box.add(dsn(envelope["r1"][0], "r1@example.test", "failed", "5.1.1", "Subject: x\r\n"))
    box.add(dsn(envelope["r2"][0], "r2@example.test", "failed", "5.1.1", "Subject: x\r\n")
            .replace(b"Status: 5.1.1\r\n", b""))
    box.flush()
    box.close()
    second_line = next(n for n, line in enumerate(path.read_bytes().split(b"\n"), start=1)
                       if line.startswith(b"From ") and n > 1)

    result = project.kairos("import", "bounces", str(path), env=ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}:{second_line}: Status: a per-recipient block without Status" in result.stderr
    assert "Traceback" not in result.stderr
    with project.store().session() as session:
        assert session.exec(select(Event).where(Event.type == "bounce")).all() == []
        assert session.exec(select(Suppression).where(Suppression.reason == "hard_bounce")).all() == []


def test_a_path_that_is_not_a_mailbox_is_refused(project: Project, tmp_path: Path) -> None:
    (project.path / "notes.txt").write_text("hello\n")
    result = project.kairos("import", "bounces", "notes.txt")
    assert result.returncode == 2
    assert "notes.txt:1: expected an mbox file" in result.stderr
