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
from tests.conftest import ROOT, TEST_SECRET, Project, write_config
from tests.dispatch.faulty_smtp import FaultyServer

BATCH = 500


def seed(project: Project, audience: int) -> list[str]:
    """``audience`` pro recipients, and every 41st recipient on the free plan, outside the audience;
    returns the addresses of those outside."""
    outside = []
    with (project.path / "recipients.csv").open("w") as handle:
        handle.write("id,email,plan\n")
        n = pro = 0
        while pro < audience:
            free = n % 41 == 0
            handle.write(f"r{n:05d},ok-{n:05d}@example.test,{'free' if free else 'pro'}\n")
            if free:
                outside.append(f"ok-{n:05d}@example.test")
            else:
                pro += 1
            n += 1
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
    return outside


def helper_processes(pid: int) -> list[int]:
    """The sending processes ``pid`` started (``--workers``), found by parent id and name."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                name = (entry / "comm").read_text().strip()
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid and name.startswith("kairos-sender-"):
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("audience", "workers"), [(20_000, 1), (10_000, 2)], ids=["one-sender", "two-processes"])
def test_kill_9_mid_run_then_resume_sends_each_recipient_exactly_once(project: Project, audience: int,
                                                                       workers: int) -> None:
    outside = seed(project, audience)
    with FaultyServer() as server:
        write_config(project.config, project.db_url, server.port)
        command = [sys.executable, "-m", "engine", "send", "news", "--workers", str(workers),
                   "--config", str(project.config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIROS_SENDING_BATCH_SIZE": str(BATCH),
               "KAIROS_SECRET": TEST_SECRET}
        output = (project.path / "sender.log").open("w")
        sender = subprocess.Popen(command, cwd=project.path, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while len(server.delivered) < audience // 3 and sender.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the moment to kill, not waiting out a race
        assert sender.poll() is None, "the sender finished before it could be killed: " + \
            (project.path / "sender.log").read_text()
        helpers = helper_processes(sender.pid)
        assert len(helpers) == workers - 1
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=60)
        output.close()
        # the helpers die with the sender (the kernel kills them at once): no orphan keeps sending.
        # An orphan would go on for many seconds (thousands of messages are left); 5 s bounds "at once".
        deadline = time.monotonic() + 5
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
    assert outside and not any(received[a] for a in outside)
    assert sum(received.values()) == audience - len(review) + sum(received[address[r]] for r in review)
