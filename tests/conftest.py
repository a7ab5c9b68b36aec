"""Shared fixtures: real servers on loopback, stores on SQLite and PostgreSQL, a project on disk.

PostgreSQL: 127.0.0.1:5432, database ``test`` (override with KAIROS_TEST_POSTGRES_URL). Each
test gets a schema of its own, dropped afterwards. Under CI (``CI`` set) an unreachable server
fails the tests; elsewhere they skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, sync_playwright

from engine.dispatch.inbox import free_port
from engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET = "kairos-test-secret"  # signs tracked links, unsubscribe URLs and VERP addresses in tests
POSTGRES_URL = os.environ.get("KAIROS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_available()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must be reachable in CI at {POSTGRES_URL}: {problem}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({problem})")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections use a fresh schema of their own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kairos.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.dispose()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SmtpServer:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    host: str
    port: int
    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    yield server
    controller.stop()


@dataclass
class Project:
    """A Kairos project in a temporary directory: config.toml, templates/, campaigns/, a DB."""

    path: Path
    db_url: str
    opened: list[Store] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())
        return target

    def kairos(self, *args: str, check: bool = False, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real command line in a subprocess, in the project directory."""
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "KAIROS_SECRET": TEST_SECRET,
                       **(env or {})}
        result = subprocess.run([sys.executable, "-m", "engine", *args, "--config", str(self.config)],
                                check=False, cwd=self.path, capture_output=True, text=True, timeout=timeout,
                                env=environment)
        if check and result.returncode != 0:
            raise AssertionError(f"kairos {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def store(self) -> Store:
        """The project's store; the fixture disposes it (and its connections) afterwards."""
        opened = Store.open(self.db_url)
        self.opened.append(opened)
        return opened


def write_config(path: Path, db_url: str, smtp_port: int, transport: str = "smtp") -> None:
    path.write_text(textwrap.dedent(f"""
        [database]
        url = "{db_url}"

        [email]
        transport = "{transport}"
        host = "127.0.0.1"
        port = {smtp_port}
        from = "Kairos Test <news@kairos.test>"

        [paths]
        campaigns = "campaigns"
        templates = "templates"
        inbox = "inbox"

        [sending]
        batch_size = 50
    """).lstrip())


@pytest.fixture
def project(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Project]:
    """A project whose config sends to the ``smtp_server`` fixture and stores in SQLite."""
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "campaigns").mkdir()
    db_url = f"sqlite:///{tmp_path / 'kairos.db'}"
    write_config(tmp_path / "config.toml", db_url, smtp_server.port)
    made = Project(tmp_path, db_url)
    yield made
    for store in made.opened:
        store.dispose()


def seed_one_headline(project: Project, recipients_csv: str) -> None:
    """Import ``recipients_csv``, one headline in pool ``news`` and the plainest campaign ``news``."""
    project.write("recipients.csv", recipients_csv)
    project.write("content.csv", "id,pool,title,url,topic,published_at\n"
                  "n1,news,Headline,https://news.example.test/1,tech,2026-11-20T08:00:00+00:00\n")
    project.write("campaigns/news.toml", """
        [campaign]
        name = "news"
        goal = "click"

        [content]
        pool = "news"

        [[variants]]
        name = "a"
        subject = "Hello {{ recipient.id }}"
        template = "digest"
    """)
    for kind, name in (("recipients", "recipients.csv"), ("content", "content.csv")):
        project.kairos("import", kind, name, check=True)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn server on a free loopback port; yields its base URL."""
    import threading
    import time

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def with_secret(secret: bytes) -> Any:
    """Default settings whose tracking secret is ``secret`` (for the tracking app in tests)."""
    import dataclasses

    from engine.config import Settings, TrackingSettings

    return dataclasses.replace(Settings(), tracking=TrackingSettings(secret=secret))


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
