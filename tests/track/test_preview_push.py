"""Push payloads in previews: rendered in the same strict sandbox, shown beside the email."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from engine.config import Settings
from engine.track.preview import render_previews
from engine.track.preview_app import preview_app
from tests.conftest import Project, serving

CAMPAIGN = """
[campaign]
name = "alerts"
goal = "click"

[channels]
allowed = ["email", "push"]

[content]
pool = "news"
items = 2

[[variants]]
name = "short"
subject = "News for you"
push_title = "{{ items[0].title }}"
push_body = "Hi {{ recipient.id }}, and {{ items[1].title | lower }} too"
template = "digest"
"""


def settings_for(project: Project, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(project.path)  # config paths are relative to the working directory
    return Settings.load(project.config, environ={"KAIROS_SECRET": "preview-secret"})


def test_push_payloads_show_beside_the_email(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("campaigns/alerts.toml", CAMPAIGN)
    settings = settings_for(project, monkeypatch)
    previews = render_previews(settings, None, datetime.now(UTC), secret=b"preview-secret")
    assert not previews.errors
    first = previews.previews[0]
    assert first.message.push is not None and first.message.email is not None
    assert first.message.push.title == "Sample story 1 for alerts"
    assert first.message.push.body == f"Hi {first.message.recipient_id}, and sample story 2 for alerts too"
    assert first.message.push.url is not None and first.message.push.url.startswith("https://example.com/")

    app = preview_app(lambda: render_previews(settings, None, datetime.now(UTC), secret=b"preview-secret"), [])
    with serving(app) as base:
        page = httpx.get(base + "/m/alerts/short/" + first.message.recipient_id).text
    assert 'id="push-title">Sample story 1 for alerts<' in page
    assert "Hi " + first.message.recipient_id in page and 'id="push-payload"' in page


def test_a_push_template_reaching_for_internals_is_refused(project: Project,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("campaigns/alerts.toml", CAMPAIGN.replace(
        'push_title = "{{ items[0].title }}"', "push_title = \"{{ ''.__class__.__mro__ }}\""))
    previews = render_previews(settings_for(project, monkeypatch), None, datetime.now(UTC), secret=b"preview-secret")
    assert previews.previews and all(p.message.push is None and p.message.error is not None
                                     for p in previews.previews)
    assert any("push_title" in error for error in previews.errors)
