"""`kairos send` through a real SMTP server on loopback, asserting on the bytes it received."""

from __future__ import annotations

import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlmodel import select

from engine.render.tokens import token_key, verify_token
from engine.store import Event, Message, MessageState, Run, RunState
from engine.store.queries import add_suppression
from tests.conftest import TEST_SECRET, Project, SmtpServer

TOPICS = ["sports", "tech", "food"]


def seed_project(project: Project) -> None:
    rows = ["id,email,timezone,consent_email,plan,first_name"]
    for n in range(12):
        plan = "pro" if n % 3 else "free"          # r0, r3, r6, r9 are free: not in the audience
        consent = "false" if n == 4 else "true"     # r4 is pro but did not consent
        rows.append(f"r{n},r{n}@example.test,Europe/Madrid,{consent},{plan},Name{n}")
    project.write("recipients.csv", "\n".join(rows) + "\n")
    items = ["id,pool,title,url,topic,published_at"]
    for j in range(9):  # three items per topic, so every taste has an unseen item left
        topic = TOPICS[j % 3]
        items.append(f"n{j},news,{topic.title()} headline {j},https://news.example.test/{j},{topic},"
                     "2026-11-20T08:00:00+00:00")
    project.write("content.csv", "\n".join(items) + "\n")
    # Every pro recipient clicked sports before, except r5 and r8 who clicked food: affinity differs.
    events = []
    for n in range(12):
        liked = ("n2", "n5") if n in (5, 8) else ("n0", "n3")
        for k, item in enumerate(liked):
            events.append(json.dumps({"recipient_id": f"r{n}", "type": "sent", "item_id": item,
                                      "ts": f"2026-11-1{k}T09:00:00+00:00", "campaign": "old"}))
            events.append(json.dumps({"recipient_id": f"r{n}", "type": "click", "item_id": item,
                                      "ts": f"2026-11-1{k}T09:30:00+00:00", "campaign": "old"}))
    project.write("events.jsonl", "\n".join(events) + "\n")
    project.write("campaigns/news.toml", """
        [campaign]
        name = "news"
        goal = "click"

        [audience]
        where = "attributes.plan == 'pro'"

        [content]
        pool = "news"
        items = 2

        [[variants]]
        name = "a"
        subject = "Top: {{ items[0].title }}"
        template = "digest"

        [[variants]]
        name = "b"
        subject = "Your picks, {{ recipient.attributes.first_name }}"
        template = "digest"

        [optimize]
        bandit = "none"
        exploration = 0.0
    """)
    for kind, name in (("recipients", "recipients.csv"), ("content", "content.csv"), ("events", "events.jsonl")):
        project.kairos("import", kind, name, check=True)


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def tracked_destinations(text: str) -> list[str]:
    """Where the tracked links of ``text`` lead (tokens signed with the test secret)."""
    key = token_key(TEST_SECRET.encode())
    tokens = [verify_token(key, token) for token in re.findall(r"/c/([\w.-]+)", text)]
    return [token.url for token in tokens if token is not None]


def test_send_delivers_one_personalized_message_per_eligible_recipient(project: Project,
                                                                       smtp_server: SmtpServer) -> None:
    seed_project(project)
    store = project.store()
    with store.session() as session:
        add_suppression(session, reason="unsubscribe", recipient_id="r7", email="r7@example.test")

    result = project.kairos("send", "news", "--seed", "3", check=True)
    assert "run 1 planned" in result.stdout

    eligible = {"r1", "r2", "r5", "r8", "r10", "r11"}  # pro, consenting, not suppressed
    received = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    assert len(smtp_server.messages) == len(eligible)
    assert set(received) == {f"{r}@example.test" for r in eligible}

    with store.session() as session:
        messages = {m.recipient_id: m for m in session.exec(select(Message)).all()}
        sent_events = session.exec(select(Event).where(Event.type == "sent", Event.campaign == "news")).all()
        run = session.exec(select(Run)).one()
    assert run.state == RunState.FINISHED
    assert messages["r4"].state == MessageState.NO_CONSENT
    assert messages["r7"].state == MessageState.SUPPRESSED
    assert {r for r, m in messages.items() if m.state == MessageState.SENT} == eligible
    assert not {"r0", "r3", "r6", "r9"} & set(messages)  # outside the audience: no row, no mail

    titles = {f"n{j}": f"{TOPICS[j % 3].title()} headline {j}" for j in range(9)}
    for recipient in eligible:
        raw = received[f"{recipient}@example.test"].data
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        decision = messages[recipient].decision
        assert decision is not None
        chosen = [item["id"] for item in decision["items"]]
        assert len(chosen) == 2
        body = text_part(parsed)
        destinations = tracked_destinations(body)
        for item_id in chosen:
            assert titles[item_id] in body
            assert any(url.startswith(f"https://news.example.test/{item_id[1:]}?utm_") for url in destinations)
        # Personalization: the first pick is from the topic the recipient clicked before.
        expected_topic = "Food" if recipient in ("r5", "r8") else "Sports"
        assert titles[chosen[0]].startswith(expected_topic)
        assert parsed["Message-ID"] == messages[recipient].header_message_id
        assert parsed["Subject"] in (f"Top: {titles[chosen[0]]}", f"Your picks, Name{recipient[1:]}")
        # Every decision is logged with its probability (exploration 0: the greedy pick has p=1).
        logged = sorted((e for e in sent_events if e.recipient_id == recipient), key=lambda e: e.position or 0)
        assert [e.item_id for e in logged] == chosen
        assert all(e.propensity == 1.0 for e in logged)
        assert logged[0].data is not None and logged[0].data["variant"] == messages[recipient].variant
        assert logged[0].data["variant_probability"] == 0.5


def test_send_resumes_an_interrupted_run_and_reports_the_batch_in_flight(project: Project,
                                                                         smtp_server: SmtpServer) -> None:
    seed_project(project)
    project.kairos("send", "news", "--seed", "3", check=True)
    store = project.store()
    # Simulate a sender that died mid-run: one message claimed, one in flight, one still planned.
    with store.session() as session:
        sent = session.exec(select(Message).where(Message.state == MessageState.SENT)
                            .order_by(Message.recipient_id)).all()
        sent[0].state, sent[1].state, sent[2].state = MessageState.CLAIMED, MessageState.SENDING, MessageState.PLANNED
        for message in sent[:3]:
            session.add(message)
        run = session.exec(select(Run)).one()
        run.state = RunState.RUNNING
        session.add(run)
        claimed, in_flight, planned = sent[0].recipient_id, sent[1].recipient_id, sent[2].recipient_id
    before = len(smtp_server.messages)

    result = project.kairos("send", "news", "--seed", "3", check=True)
    assert "resuming unfinished run 1" in result.stdout
    assert "1 message(s) were in flight" in result.stdout
    again = [m.rcpt_tos[0] for m in smtp_server.messages[before:]]
    # The claimed and planned ones are sent; the one in flight is reported, not re-sent.
    assert sorted(again) == sorted([f"{claimed}@example.test", f"{planned}@example.test"])
    with store.session() as session:
        states = {m.recipient_id: m.state for m in session.exec(select(Message)).all()}
        runs = session.exec(select(Run)).all()
    assert states[in_flight] == MessageState.REVIEW
    assert len(runs) == 1 and runs[0].state == RunState.FINISHED


def test_a_down_server_pauses_the_run_and_the_next_send_resumes_it(project: Project,
                                                                    smtp_server: SmtpServer) -> None:
    seed_project(project)
    from engine.dispatch.inbox import free_port
    from tests.conftest import write_config

    write_config(project.config, project.db_url, free_port())
    with project.config.open("a") as config:
        config.write("retry_backoff = 0.01\npause_after = 5\n")
    result = project.kairos("send", "news", timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot connect" in result.stderr and "paused" in result.stderr
    assert "Traceback" not in result.stderr
    with project.store().session() as session:
        states = {m.recipient_id: m.state for m in session.exec(select(Message)).all()}
        run = session.exec(select(Run)).one()
    # Nothing was burnt: every eligible recipient is still planned, none failed.
    assert {r for r, s in states.items() if s == MessageState.PLANNED} == {"r1", "r2", "r5", "r7", "r8", "r10", "r11"}
    assert MessageState.FAILED not in states.values() and MessageState.SENT not in states.values()
    assert run.state == RunState.PAUSED

    # r7 unsubscribes while the run is paused: suppressions are checked when sending, not only at planning
    with project.store().session() as session:
        add_suppression(session, reason="unsubscribe", recipient_id="r7", email="r7@example.test")
    write_config(project.config, project.db_url, smtp_server.port)
    resumed = project.kairos("send", "news", check=True)
    assert "resuming unfinished run 1" in resumed.stdout and "it had paused" in resumed.stdout
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        f"{r}@example.test" for r in ("r1", "r2", "r5", "r8", "r10", "r11"))
    with project.store().session() as session:
        assert session.exec(select(Message).where(Message.recipient_id == "r7")).one().state == \
            MessageState.SUPPRESSED
