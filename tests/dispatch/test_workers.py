"""`kairos send --workers N`: several processes pump one run; every recipient gets exactly one
message, on SQLite (its write lock) and PostgreSQL (FOR UPDATE SKIP LOCKED) alike."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlmodel import select

from engine.store import Message, MessageState, Run, RunState
from tests.conftest import Project, SmtpServer, seed_one_headline, write_config

AUDIENCE = 2000
# Each message takes the server this long, so the run outlasts the helper's start-up (loading
# its code, the campaign and a connection pool): the sender alone would otherwise be done first.
SERVER_DELAY = 0.04


def test_two_sending_processes_share_a_run_without_duplicates(project: Project, smtp_server: SmtpServer,
                                                              store_url: str) -> None:
    write_config(project.config, store_url, smtp_server.port)
    keep = smtp_server.handle_DATA

    async def slow(server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(SERVER_DELAY)
        return await keep(server, session, envelope)

    smtp_server.handle_DATA = slow  # type: ignore[method-assign]
    project.db_url = store_url
    seed_one_headline(project, "id,email\n" + "".join(f"r{n:05d},r{n:05d}@example.test\n" for n in range(AUDIENCE)))

    result = project.kairos("send", "news", "--workers", "2", "--seed", "4", check=True, timeout=300)
    assert f"message states now: {AUDIENCE} sent" in result.stdout

    received = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert len(received) == AUDIENCE and set(received.values()) == {1}
    store = project.store()
    with store.session() as session:
        messages = session.exec(select(Message)).all()
        run = session.exec(select(Run)).one()
    store.dispose()
    assert {m.state for m in messages} == {MessageState.SENT} and run.state == RunState.FINISHED
    by_worker = Counter(m.claimed_by for m in messages)
    assert len(by_worker) == 2 and min(by_worker.values()) >= 50  # both processes took batches


def test_helpers_exit_with_the_sender_when_planning_fails(project: Project, smtp_server: SmtpServer) -> None:
    seed_one_headline(project, "id,email\nr1,r1@example.test\n")
    project.write("campaigns/news.toml", """
        [campaign]
        name = "news"
        goal = "click"

        [content]
        pool = "nothing-here"

        [[variants]]
        name = "a"
        subject = "Hello {{ recipient.id }}"
        template = "digest"
    """)
    result = project.kairos("send", "news", "--workers", "3", timeout=120)
    assert result.returncode == 2 and "the content pool 'nothing-here' has no item" in result.stderr
    assert smtp_server.messages == []
    store = project.store()
    with store.session() as session:
        assert session.exec(select(Message)).all() == [] and session.exec(select(Run)).all() == []
