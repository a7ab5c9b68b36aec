"""kill -9 the sender in the middle of a 20,000-message run, then `kairos send` again.

Every eligible recipient ends with exactly one message, except the messages of the batch that
was in flight at the kill: those are reported (``review``) and received at most once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from engine.store import Message, MessageState, Run, RunState
from tests.conftest import ROOT, Project, write_config
from tests.dispatch.faulty_smtp import FaultyServer

BATCH = 500


def seed(project: Project, audience: int) -> None:
    with (project.path / "recipients.csv").open("w") as handle:
        handle.write("id,email,plan\n")
        for n in range(audience + 500):
            # 500 free-plan recipients (every 41st of the first 20,500) are outside the audience
            handle.write(f"r{n:05d},ok-{n:05d}@example.test,{'free' if n % 41 == 0 and n < 20500 else 'pro'}\n")
    project.write("content.csv", "id,pool,title,url,topic,published_at\n" + "".join(
        f"n{j},news,Headline {j},https://news.example.test/{j},t{j % 3},2026-11-20T08:00:00+00:00\n"
        for j in range(6)))
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
        subject = "{{ items[0].title }} for {{ recipient.id }}"
        template = "digest"
    """)
    for kind, name in (("recipients", "recipients.csv"), ("content", "content.csv")):
        project.kairos("import", kind, name, check=True)


def helper_processes(pid: int) -> list[int]:
    """The sending processes ``pid`` spawned (``--workers``), found by parent id and command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("audience", "workers"), [(20_000, 1), (6_000, 2)], ids=["one-sender", "two-processes"])
def test_kill_9_mid_run_then_resume_sends_each_recipient_exactly_once(project: Project, audience: int,
                                                                       workers: int) -> None:
    seed(project, audience)
    with FaultyServer() as server:
        write_config(project.config, project.db_url, server.port)
        command = [sys.executable, "-m", "engine", "send", "news", "--workers", str(workers),
                   "--config", str(project.config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIROS_SENDING_BATCH_SIZE": str(BATCH)}
        sender = subprocess.Popen(command, cwd=project.path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while len(server.delivered) < audience // 3 and sender.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the moment to kill, not waiting out a race
        assert sender.poll() is None, f"the sender finished before it could be killed: {sender.communicate()}"
        helpers = helper_processes(sender.pid)
        assert len(helpers) == workers - 1
        sender.send_signal(signal.SIGKILL)
        sender.communicate(timeout=60)
        # the helpers die with the sender (the kernel kills them): no orphan keeps sending
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in helpers)
        at_kill = len(server.delivered)
        assert 0 < at_kill < audience

        resumed = project.kairos("send", "news", check=True, timeout=500, env={"KAIROS_SENDING_BATCH_SIZE": str(BATCH)})
        received = server.delivered_to()

    assert "resuming unfinished run 1" in resumed.stdout
    with project.store().session() as session:
        messages = session.exec(select(Message)).all()
        run = session.exec(select(Run)).one()
    review = {m.recipient_id for m in messages if m.state == MessageState.REVIEW}
    eligible = {m.recipient_id for m in messages}
    assert len(eligible) == audience  # pro recipients only
    assert run.state == RunState.FINISHED
    # at most the batch in flight of each sending process is ambiguous, and it is reported
    assert len(review) <= BATCH * workers
    if review:
        assert f"{len(review)} message(s) were in flight when the last sender stopped" in resumed.stdout
    address = {m.recipient_id: f"ok-{m.recipient_id[1:]}@example.test" for m in messages}
    assert max(received.values()) == 1  # nobody got two
    for recipient in eligible - review:
        assert received[address[recipient]] == 1, recipient
    assert {m.state for m in messages if m.recipient_id not in review} == {MessageState.SENT}
    outside = [f"ok-{n:05d}@example.test" for n in range(min(20500, audience + 500)) if n % 41 == 0]
    assert not any(received[a] for a in outside)
    assert sum(received.values()) == audience - len(review) + sum(received[address[r]] for r in review)
