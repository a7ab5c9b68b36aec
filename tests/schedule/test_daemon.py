"""`kairos daemon` as a real process: schedules, triggered sends, file changes, tracking, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack as contextlib_exit_stack
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
from sqlmodel import select

from engine.dispatch.inbox import free_port
from engine.store import Message, MessageState
from tests.conftest import ROOT, TEST_SECRET, Project, SmtpServer, write_config

API_KEY = "daemon-test-key"


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    """Poll until ``condition`` holds: the daemon works on its own clock, the test watches it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.05)


def configure(project: Project, smtp_port: int, http_port: int) -> None:
    write_config(project.config, project.db_url, smtp_port)
    with project.config.open("a") as config:
        config.write(f'\n[tracking]\nbase_url = "http://127.0.0.1:{http_port}"\n\n[daemon]\npoll_interval = 0.2\n')


@contextmanager
def daemon(project: Project, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = project.path / f"daemon-{len(list(project.path.glob('daemon-*.log')))}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIROS_SECRET": TEST_SECRET, "KAIROS_API_KEY": API_KEY}
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "engine", "daemon", *args, "--config", str(project.config)],
                                   cwd=project.path, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process, log
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def campaign(name: str, schedule: str, subject: str) -> str:
    return f"""
        [campaign]
        name = "{name}"
        goal = "click"

        [schedule]
        {schedule}

        [content]
        pool = "news"

        [[variants]]
        name = "a"
        subject = "{subject}"
        template = "digest"
    """


def seed(project: Project, recipients: int) -> None:
    project.write("people.csv", "id,email,timezone\n" + "".join(
        f"r{n},r{n}@example.test,Europe/Madrid\n" for n in range(recipients)))
    project.write("items.csv", "id,pool,title,url\nn1,news,One,https://news.example.test/1\n")
    project.kairos("import", "recipients", "people.csv", check=True)
    project.kairos("import", "content", "items.csv", check=True)


def subjects_to(server: SmtpServer, address: str) -> list[str]:
    return [str(message_from_bytes(m.data, policy=policy.default)["Subject"])
            for m in server.messages if m.rcpt_tos == [address]]


def signup(base: str, recipient: str, event_id: str) -> None:
    response = httpx.post(f"{base}/events", headers={"Authorization": f"Bearer {API_KEY}"},
                          json={"id": event_id, "recipient_id": recipient, "type": "signup",
                                "ts": datetime.now(UTC).isoformat()})
    assert response.status_code == 202, response.text


def test_daemon_sends_schedules_and_triggers_reloads_refuses_and_stops_cleanly(project: Project,
                                                                               smtp_server: SmtpServer) -> None:
    seed(project, 5)
    port = free_port()
    configure(project, smtp_server.port, port)
    at = (datetime.now(UTC) + timedelta(seconds=4)).isoformat(timespec="seconds")
    project.write("campaigns/launch.toml", campaign("launch", f'at = "{at}"', "Launch day"))
    welcome = project.write("campaigns/welcome.toml",
                            campaign("welcome", 'trigger = { event = "signup", delay = "0s" }', "Welcome v1"))
    base = f"http://127.0.0.1:{port}"
    with daemon(project, "--port", str(port)) as (process, log):
        # a campaign due in a few seconds reaches the real SMTP server, once per recipient
        wait_for(lambda: len(smtp_server.messages) == 5, 40, "the launch campaign", log)
        assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [f"r{n}@example.test" for n in range(5)]

        # an ingested event triggers that recipient's message, once per event
        signup(base, "r1", "signup-1")
        signup(base, "r1", "signup-1")  # the same event again: idempotent
        wait_for(lambda: subjects_to(smtp_server, "r1@example.test") == ["Launch day", "Welcome v1"], 30,
                 "the triggered welcome", log)

        # a changed campaign file is picked up
        welcome.write_text(welcome.read_text().replace("Welcome v1", "Welcome v2"))
        wait_for(lambda: log.read_text().count("loaded campaign welcome") >= 2, 30, "the reload", log)
        signup(base, "r2", "signup-2")
        wait_for(lambda: "Welcome v2" in subjects_to(smtp_server, "r2@example.test"), 30, "welcome v2", log)

        # an invalid change is refused and the last valid version keeps running
        welcome.write_text(welcome.read_text().replace('goal = "click"', "goal = 7"))
        wait_for(lambda: "refused a campaign change" in log.read_text(), 30, "the refusal", log)
        assert "welcome.toml:3: campaign.goal" in log.read_text()
        signup(base, "r3", "signup-3")
        wait_for(lambda: "Welcome v2" in subjects_to(smtp_server, "r3@example.test"), 30, "welcome v2 again", log)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    text = log.read_text()
    assert "stopped cleanly" in text and "Traceback" not in text
    assert subjects_to(smtp_server, "r1@example.test").count("Welcome v1") == 1
    with project.store().session() as session:
        states = [m.state for m in session.exec(select(Message)).all()]
    assert states.count(MessageState.SENT) == 8 and not {MessageState.CLAIMED, MessageState.SENDING} & set(states)


def tracked_links(raw: bytes) -> list[str]:
    text = message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("plain",))
    assert text is not None
    return re.findall(r"https?://[^\s>]+/c/[\w.=-]+", str(text.get_content()))


def test_a_click_reaches_the_bandit_and_one_click_unsubscribe_stops_planned_messages(
        project: Project, smtp_server: SmtpServer) -> None:
    from engine.learn.outcomes import arm_outcomes
    from engine.schedule.planning import plan_run
    from engine.spec import load_campaign

    seed(project, 3)
    port = free_port()
    configure(project, smtp_server.port, port)
    at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat(timespec="seconds")
    project.write("campaigns/news.toml", campaign("news", f'at = "{at}"', "News"))
    later = project.write("campaigns/later.toml", campaign("later", "", "Later"))
    # A run planned before anyone unsubscribes: its messages go out in 10 seconds.
    spec = load_campaign(later, project.path / "templates")
    planned = plan_run(project.store(), spec, datetime.now(UTC) + timedelta(seconds=10))
    assert planned.counts == {"send": 3}

    with daemon(project, "--port", str(port)) as (process, log):
        wait_for(lambda: len(smtp_server.messages) == 3, 40, "the news campaign", log)
        by_recipient = {m.rcpt_tos[0]: m.data for m in smtp_server.messages}

        # r0 follows a tracked link over HTTP: 302 to the destination, and the bandit sees the click
        [link] = tracked_links(by_recipient["r0@example.test"])
        assert link.startswith(f"http://127.0.0.1:{port}/c/")
        response = httpx.get(link, follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"].startswith("https://news.example.test/1?")
        with project.store().session() as session:
            outcomes = arm_outcomes(session, "news", ["a"], "click", timedelta(hours=48), datetime.now(UTC))
        assert outcomes.sends.tolist() == [3.0] and outcomes.successes.tolist() == [1.0]

        # r1 unsubscribes with one click (RFC 8058): a POST, no confirmation
        unsubscribe = re.findall(r"<(http[^>]+)>", str(message_from_bytes(
            by_recipient["r1@example.test"], policy=policy.default)["List-Unsubscribe"]))[0]
        answer = httpx.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200

        # the run planned earlier reaches everyone else, not r1
        wait_for(lambda: len(smtp_server.messages) == 5, 40, "the later campaign", log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    later_to = sorted(m.rcpt_tos[0] for m in smtp_server.messages[3:])
    assert later_to == ["r0@example.test", "r2@example.test"]
    with project.store().session() as session:
        r1 = session.exec(select(Message).where(Message.campaign == "later", Message.recipient_id == "r1")).one()
    assert r1.state == MessageState.SUPPRESSED


def test_three_workers_on_postgres_send_each_message_once_and_a_new_leader_takes_over(
        project: Project, smtp_server: SmtpServer, postgres_url: str) -> None:
    from collections import Counter

    from engine.store import Run

    project.db_url = postgres_url
    configure(project, smtp_server.port, free_port())
    with project.config.open("a") as config:
        config.write('lease = "30s"\n')
    seed(project, 10_000)
    at = (datetime.now(UTC) + timedelta(seconds=8)).isoformat(timespec="seconds")
    project.write("campaigns/bulk.toml", campaign("bulk", f'at = "{at}"', "Bulk"))
    with contextlib_exit_stack() as stack:
        workers = [stack.enter_context(daemon(project, "--worker", "--name", f"w{n}")) for n in range(3)]
        logs = [log for _, log in workers]
        wait_for(lambda: len(smtp_server.messages) >= 10_000, 300, "10,000 messages", logs[0])
        # every recipient exactly once
        counts = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
        assert len(counts) == 10_000 and set(counts.values()) == {1}
        with project.store().session() as session:
            assert len(session.exec(select(Run).where(Run.campaign == "bulk")).all()) == 1  # fired once
            senders = Counter(m.claimed_by for m in session.exec(select(Message)).all())
        assert len(senders) >= 2, senders  # the workers shared the run

        leaders = [n for n, log in enumerate(logs) if "is leading" in log.read_text()]
        assert len(leaders) == 1
        leader = leaders[0]
        workers[leader][0].kill()
        workers[leader][0].wait()
        at = (datetime.now(UTC) + timedelta(seconds=4)).isoformat(timespec="seconds")
        project.write("campaigns/second.toml", campaign("second", f'at = "{at}"', "Second").replace(
            "[content]", "[audience]\nwhere = \"id == 'r1'\"\n\n[content]"))
        wait_for(lambda: "Second" in subjects_to(smtp_server, "r1@example.test"), 60, "the new leader's firing",
                 logs[(leader + 1) % 3])
        assert sum("is leading" in log.read_text() for n, log in enumerate(logs) if n != leader) == 1
        for n, (process, _log) in enumerate(workers):
            if n != leader:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=30) == 0
