"""`kairos daemon` as a real process: schedules, triggered sends, file changes, tracking, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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
