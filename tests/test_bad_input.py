"""Malformed campaign, config and import files through the real command line.

Each must exit with code 2, name the file and the line or field, print no traceback, and leave
the store exactly as it was.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import pytest

from tests.conftest import Project

CAMPAIGN = """
[campaign]
name = "news"
goal = "click"

[content]
pool = "news"
items = 1

[[variants]]
name = "a"
subject = "Hi"
template = "digest"
"""


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()  # substrings of stderr: the file, the line or field, what was expected


CASES = [
    Case("toml syntax", ("validate", "campaigns/bad.toml"), {"campaigns/bad.toml": "[campaign\nname = 1\n"},
         expect=("campaigns/bad.toml:1", "not valid TOML")),
    Case("yaml syntax", ("validate", "campaigns/bad.yaml"),
         {"campaigns/bad.yaml": "campaign:\n  name: [x\n  goal: click\n"}, expect=("campaigns/bad.yaml:", "YAML")),
    Case("unknown key", ("validate", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace('goal = "click"', 'goal = "click"\ncolour = "red"')},
         expect=("bad.toml:4: campaign.colour", "unknown key")),
    Case("wrong type on send", ("send", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace("items = 1", 'items = "one"')},
         expect=("bad.toml:7: content.items", "expected a whole number")),
    Case("bad cron", ("validate", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace("[content]", '[schedule]\ncron = "61 * * * *"\n\n[content]')},
         expect=("bad.toml:6: schedule.cron", "cron expression")),
    Case("missing template", ("validate", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace('template = "digest"', 'template = "gone"')},
         expect=("bad.toml:12: variants[0].template", "no template 'gone'")),
    Case("unknown goal", ("validate", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace('goal = "click"', 'goal = "Click!"')},
         expect=("bad.toml:3: campaign.goal", "expected one of open, click, convert, share")),
    Case("empty content pool", ("send", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace('pool = "news"', 'pool = "empty"')},
         expect=("bad.toml:6: content.pool", "has no item")),
    Case("bad rule", ("send", "campaigns/bad.toml"),
         {"campaigns/bad.toml": CAMPAIGN.replace("[content]", "[audience]\nwhere = \"(plan == 'pro'\"\n\n[content]")},
         expect=("bad.toml:6: audience.where", "column")),
    Case("no such campaign", ("send", "nonexistent"), expect=("no campaign 'nonexistent'",)),
    Case("config syntax", ("validate",), {"config.toml": "[database\n"}, expect=("config.toml:1", "not valid TOML")),
    Case("config unknown key", ("validate",), {"config.toml": "[email]\nhots = 'x'\n"},
         expect=("config.toml:2: email.hots", "unknown key")),
    Case("config bad port", ("send", "news"), {"config.toml": "[email]\nport = 'twenty'\n"},
         expect=("config.toml:2: email.port", "expected a whole number")),
    Case("environment override", ("send", "news"), env={"KAIROS_EMAIL_PORT": "0"},
         expect=("$KAIROS_EMAIL_PORT: email.port", "port number")),
    Case("recipient row", ("import", "recipients", "people.csv"),
         {"people.csv": "id,email\nx1,x1@example.test\nx2,nope\n"}, expect=("people.csv:3: email", "not an email")),
    Case("naive event time", ("import", "events", "events.jsonl"),
         {"events.jsonl": '{"recipient_id": "r1", "type": "click", "ts": "2026-11-20T09:00:00"}\n'},
         expect=("events.jsonl:1: ts", "no UTC offset")),
    Case("device platform", ("import", "devices", "devices.csv"),
         {"devices.csv": "recipient_id,platform,token\nr1,pager,abc\n"}, expect=("devices.csv:2: platform",)),
    Case("unknown import kind", ("import", "people", "people.csv"), {"people.csv": "id\nx\n"},
         expect=("KIND", "recipients, devices, content, events")),
    Case("import file missing", ("import", "content", "missing.csv"), expect=("missing.csv", "no such file")),
    Case("import format", ("import", "content", "items.txt"), {"items.txt": "id\n"},
         expect=("items.txt", "expected a .csv or .jsonl file")),
]


def snapshot(project: Project) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table (the SQLite file read directly)."""
    path = project.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(connection.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


@pytest.fixture
def seeded(project: Project) -> Project:
    project.write("recipients.csv", "id,email,plan\nr1,r1@example.test,pro\nr2,r2@example.test,free\n")
    project.write("content.csv", "id,pool,title,url\nn1,news,One,https://n.test/1\n")
    project.write("campaigns/news.toml", CAMPAIGN)
    project.kairos("import", "recipients", "recipients.csv", check=True)
    project.kairos("import", "content", "content.csv", check=True)
    return project


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_names_the_place_and_writes_nothing(seeded: Project, case: Case) -> None:
    before = snapshot(seeded)
    for name, text in case.files.items():
        seeded.write(name, text)
    result = seeded.kairos(*case.args, env=case.env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for expected in case.expect:
        assert expected in result.stderr, f"{expected!r} not in:\n{result.stderr}"
    assert snapshot(seeded) == before


def test_there_are_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15
