"""Campaigns and templates written to a temporary directory, compiled the way the pump compiles them."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.render.templates import CompiledVariant, TemplateSet
from engine.spec import load_campaign
from engine.spec.model import CampaignSpec
from tests.conftest import ROOT


@dataclass
class TemplateProject:
    """A templates directory (a copy of the shipped one) and a campaign file beside it."""

    path: Path

    @property
    def templates(self) -> Path:
        return self.path / "templates"

    def template(self, name: str, text: str) -> Path:
        target = self.templates / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())
        return target

    def campaign(self, template: str = "digest", subject: str = "Your picks", preheader: str | None = None,
                 extra: str = "") -> CampaignSpec:
        lines = ["[campaign]", 'name = "news"', 'goal = "click"', extra, "", "[content]", 'pool = "news"',
                 "items = 2", "", "[[variants]]", 'name = "a"', f"subject = {subject!r}", f'template = "{template}"']
        if preheader is not None:
            lines.append(f"preheader = {preheader!r}")
        path = self.path / "campaigns" / "news.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return load_campaign(path, self.templates)

    def compile(self, **campaign: Any) -> CompiledVariant:
        spec = self.campaign(**campaign)
        return TemplateSet(self.templates).compile(spec, spec.variants[0])


@pytest.fixture
def tp(tmp_path: Path) -> TemplateProject:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return TemplateProject(tmp_path)


def sample_context(first_name: str = "Ada") -> dict[str, Any]:
    published = datetime(2026, 11, 30, 8, tzinfo=UTC)
    return {
        "recipient": {"id": "r1", "email": "ada@example.test", "locale": "en", "timezone": "Europe/London",
                      "attributes": {"first_name": first_name}},
        "items": [{"id": f"n{slot}", "title": f"Story {slot} & more", "url": f"https://news.example.test/{slot}",
                   "topic": "science", "published_at": published, "attributes": {"reading_minutes": 4},
                   "slot": slot} for slot in range(2)],
        "campaign": {"name": "news", "variant": "a"},
        "message": {"unsubscribe_url": "https://track.example.test/u/token"},
    }
