"""`kairos preview --serve` driven in headless Chromium (Debian's chromium): what the page shows,
and that it reloads itself when a template changes. A screenshot is kept in test-artifacts/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from engine.dispatch.inbox import free_port
from tests.conftest import ARTIFACTS, ROOT, TEST_SECRET, Project
from tests.schedule.test_send_smtp import seed_project

STARTUP_TIMEOUT = 30.0


@pytest.fixture
def preview_server(project: Project) -> Iterator[str]:
    """The real `kairos preview --serve` in a subprocess, on a free loopback port."""
    seed_project(project)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIROS_SECRET": TEST_SECRET}
    process = subprocess.Popen([sys.executable, "-m", "engine", "preview", "--serve", "--port", str(port),
                                "--config", str(project.config)], cwd=project.path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while True:  # until the server answers (or has died), not for a fixed time
            if process.poll() is not None:
                raise AssertionError(f"kairos preview exited {process.returncode}: {process.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("kairos preview did not answer")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def listening(page: Page) -> None:
    """Wait until the page's change stream is connected, so no edit can slip by unseen."""
    page.wait_for_function("window.kairosChanges && window.kairosChanges.readyState === 1")


def test_the_preview_page_shows_every_message_side_by_side_and_reloads(project: Project, preview_server: str,
                                                                      browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    page.goto(preview_server + "/")
    rows = page.locator("#messages tr")
    expect(rows).to_have_count(1 + 2 * 3)  # header + 2 variants x 3 sample recipients
    listed = page.locator("#messages").inner_text()
    for recipient in ("r0", "r1", "r10"):
        assert recipient in listed
    assert "Your picks, Name1" in listed and "Top: Food headline 8" in listed

    page.get_by_role("link", name="Your picks, Name1", exact=True).click()
    expect(page.locator("#subject")).to_have_text("Your picks, Name1")
    html = page.frame_locator("#html")
    expect(html.locator("h1")).to_have_text("Hi Name1, your picks this week")
    expect(html.locator(".card h2 a")).to_have_text(["Food headline 8", "Tech headline 7"])
    assert "font-size: 18px" in (html.locator(".card h2").first.get_attribute("style") or "")  # CSS inlined
    expect(page.locator("#text")).to_contain_text("* Food headline 8 (food, 5 min)")
    headers = page.locator("#headers")
    expect(headers).to_contain_text("List-Unsubscribe-Post")
    expect(headers).to_contain_text("List-Unsubscribe=One-Click")
    expect(headers).to_contain_text("r1@example.test")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preview-page.png"), full_page=True)

    # Edit the template: the open page reloads itself and shows the change.
    listening(page)
    digest = project.path / "templates" / "digest.html"
    digest.write_text(digest.read_text().replace("your picks this week", "here is what is new"))
    expect(html.locator("h1")).to_have_text("Hi Name1, here is what is new", timeout=15_000)

    # Break it: the page says where, with the template's file and line.
    listening(page)
    digest.write_text(digest.read_text().replace("{{ ui.item_card(item) }}", "{{ item.teaser }}"))
    expect(page.locator("#error")).to_contain_text(f"{digest}:6: undefined value", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "preview-page-error.png"), full_page=True)
