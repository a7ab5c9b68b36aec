from __future__ import annotations

import shutil
import textwrap
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.spec import load_campaign
from tests.conftest import ROOT

VALID = """
[campaign]
name = "digest"
goal = "convert"
goal_window = "2d"

[schedule]
cron = "0 9 * * MON"
timezone = "Europe/Madrid"
window = ["08:00", "21:30"]
send_time = "optimize"

[audience]
where = "attributes.plan == 'pro' and clicks(30) >= 1"
holdout = 0.1
frequency_cap = { max = 2, per = "7d" }

[content]
pool = "articles"
where = "age_hours < 72"
items = 3
diversity = { by = "topic", max_per_topic = 2 }

[[variants]]
name = "a"
subject = "{{ items[0].title }}"
template = "digest"

[[variants]]
name = "b"
subject = "Plain"
preheader = "Hello {{ recipient.id }}"
template = "digest"

[optimize]
bandit = "none"
exploration = 0.2
"""

VALID_YAML = """
campaign:
  name: digest
  goal: convert
  goal_window: 2d
schedule:
  cron: "0 9 * * MON"
  timezone: Europe/Madrid
  window: ["08:00", "21:30"]
  send_time: optimize
audience:
  where: "attributes.plan == 'pro' and clicks(30) >= 1"
  holdout: 0.1
  frequency_cap: {max: 2, per: 7d}
content:
  pool: articles
  where: "age_hours < 72"
  items: 3
  diversity: {by: topic, max_per_topic: 2}
variants:
  - name: a
    subject: "{{ items[0].title }}"
    template: digest
  - name: b
    subject: Plain
    preheader: "Hello {{ recipient.id }}"
    template: digest
optimize:
  bandit: none
  exploration: 0.2
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path / "templates"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_toml_and_yaml_give_the_same_spec(tmp_path: Path, templates: Path) -> None:
    toml = load_campaign(write(tmp_path, "digest.toml", VALID), templates)
    yaml = load_campaign(write(tmp_path, "digest.yaml", VALID_YAML), templates)
    assert replace(toml, source=yaml.source, spec_hash=yaml.spec_hash, lines={}) == replace(yaml, lines={})
    assert toml.goal_event == "conversion"
    assert toml.goal_window == timedelta(days=2)
    assert toml.schedule.window == (8 * 60, 21 * 60 + 30)
    assert toml.audience.frequency_cap is not None and toml.audience.frequency_cap.per == timedelta(days=7)
    assert toml.content.diversity is not None and toml.content.diversity.max_per_value == 2
    assert [v.name for v in toml.variants] == ["a", "b"]
    assert toml.line_of("schedule.cron") == 7
    assert yaml.line_of("schedule.cron") == 6


def test_minimal_campaign_gets_documented_defaults(tmp_path: Path, templates: Path) -> None:
    spec = load_campaign(write(tmp_path, "m.toml", """
        [campaign]
        name = "m"
        goal = "signup_completed"
        [content]
        pool = "p"
        [[variants]]
        name = "v"
        subject = "Hi"
        template = "digest"
    """), templates)
    assert spec.goal_event == "signup_completed"
    assert spec.goal_window == timedelta(hours=48)
    assert spec.schedule.whole_day and spec.schedule.send_time == "fixed" and spec.schedule.timezone == "recipient"
    assert spec.channels == ("email",) and spec.content.items == 1
    assert spec.optimize.bandit == "thompson" and spec.optimize.exploration == 0.1


BROKEN = [
    # (description, replace this, with this, field, line)
    ("unknown section", "[optimize]", "[optimise]", "optimise", 34),
    ("unknown key", 'goal_window = "2d"', 'goal_windw = "2d"', "campaign.goal_windw", 4),
    ("wrong type", "items = 3", 'items = "three"', "content.items", 20),
    ("bad cron", 'cron = "0 9 * * MON"', 'cron = "0 25 * * MON"', "schedule.cron", 7),
    ("cron with 6 fields", 'cron = "0 9 * * MON"', 'cron = "0 0 9 * * MON"', "schedule.cron", 7),
    ("missing template", 'template = "digest"\n\n[[variants]]', 'template = "nope"\n\n[[variants]]',
     "variants[0].template", 26),
    ("reserved goal", 'goal = "convert"', 'goal = "sent"', "campaign.goal", 3),
    ("goal that is no event name", 'goal = "convert"', 'goal = "Click Rate!"', "campaign.goal", 3),
    ("empty pool", 'pool = "articles"', 'pool = ""', "content.pool", 18),
    ("bad window", 'window = ["08:00", "21:30"]', 'window = ["21:00", "08:00"]', "schedule.window", 9),
    ("bad duration", 'goal_window = "2d"', 'goal_window = "2 days"', "campaign.goal_window", 4),
    ("holdout too large", "holdout = 0.1", "holdout = 0.9", "audience.holdout", 14),
    ("bad time zone", 'timezone = "Europe/Madrid"', 'timezone = "Mars/Olympus"', "schedule.timezone", 8),
    ("cron and at", 'cron = "0 9 * * MON"', 'cron = "0 9 * * MON"\nat = "2026-12-01T09:00Z"', "schedule.at", 8),
    ("naive at", 'cron = "0 9 * * MON"', 'at = "2026-12-01T09:00"', "schedule.at", 7),
    ("cap without per", 'frequency_cap = { max = 2, per = "7d" }', "frequency_cap = { max = 2 }",
     "audience.frequency_cap.per", 15),
    ("duplicate variant", 'name = "b"', 'name = "a"', "variants[1].name", 29),
    ("bad subject template", 'subject = "Plain"', 'subject = "{{ oops"', "variants[1].subject", 30),
    ("bandit unknown", 'bandit = "none"', 'bandit = "greedy"', "optimize.bandit", 35),
    ("unknown channel", "[optimize]", '[channels]\nallowed = ["fax"]\n\n[optimize]', "channels.allowed[0]", 35),
    ("campaign without goal", 'goal = "convert"\n', "", "campaign.goal", 1),
    ("variant without subject", 'subject = "Plain"\n', "", "variants[1].subject", 28),
    ("staged test without wait", "exploration = 0.2", "exploration = 0.2\nstaged = { explore = 0.2 }",
     "optimize.staged.wait", 37),
]


@pytest.mark.parametrize(("case", "old", "new", "field", "line"), BROKEN, ids=[b[0] for b in BROKEN])
def test_errors_name_file_line_field_and_expectation(tmp_path: Path, templates: Path, case: str, old: str,
                                                    new: str, field: str, line: int) -> None:
    assert old in VALID, case
    path = write(tmp_path, "broken.toml", VALID.replace(old, new, 1))
    with pytest.raises(SpecError) as caught:
        load_campaign(path, templates)
    error = caught.value
    assert error.path == path
    assert error.field == field
    assert error.line == line, str(error)
    assert str(error).startswith(f"{path}:{line}: {field}: ")
    assert "expected" in str(error) or "missing" in str(error) or "unknown" in str(error) or "twice" in str(error) \
        or "not both" in str(error)


def test_rule_errors_point_at_the_column(tmp_path: Path, templates: Path) -> None:
    path = write(tmp_path, "rule.toml", VALID.replace("clicks(30) >= 1", "click(30) >= 1"))
    with pytest.raises(SpecError) as caught:
        load_campaign(path, templates)
    assert caught.value.field == "audience.where" and caught.value.line == 13
    assert caught.value.column == 30
    assert "unknown function 'click'" in str(caught.value)


def test_yaml_syntax_error_has_its_line(tmp_path: Path, templates: Path) -> None:
    path = write(tmp_path, "bad.yaml", VALID_YAML.replace("  goal: convert", "  goal: [convert"))
    with pytest.raises(SpecError) as caught:
        load_campaign(path, templates)
    assert caught.value.line is not None and caught.value.line >= 3
    assert "not valid YAML" in str(caught.value)


def test_missing_required_section(tmp_path: Path, templates: Path) -> None:
    path = write(tmp_path, "nocontent.toml", '[campaign]\nname = "x"\ngoal = "click"\n')
    with pytest.raises(SpecError, match=r"content: missing the \[content\] section"):
        load_campaign(path, templates)
