"""`kairos report` on the real command line: the terminal tables, the JSON schema, the HTML page in
headless Chromium (a screenshot is kept in test-artifacts/), and bad input."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Request, expect

from engine.store.segments import SegmentProfile, save_build
from tests.conftest import ARTIFACTS, Project
from tests.report.planted import NOW, SEGMENTS, Planted, plant, write_campaign

RATE_KEYS = {"hits", "trials", "rate", "low", "high"}
LIFT_KEYS = {"absolute", "low", "high", "relative", "relative_low", "relative_high", "significant"}
SLICE_KEYS = {"name", "goal", "holdout", "lift", "engagement", "posterior"}


def planted_project(project: Project) -> Planted:
    write_campaign(project.path / "campaigns")
    store = project.store()
    truth = plant(store)
    with store.session() as session:
        save_build(session, built_at=NOW, method="kmeans", k=2, silhouette=0.4, min_size=1, features=[],
                   segments=[SegmentProfile(name, 3000, {}) for name in SEGMENTS],
                   recipient_ids=list(truth.segment_of), labels=list(truth.segment_of.values()))
    return truth


def check_rate(rate: dict[str, Any]) -> None:
    assert set(rate) == RATE_KEYS and isinstance(rate["hits"], int) and isinstance(rate["trials"], int)
    assert 0.0 <= rate["rate"] <= 1.0
    assert (rate["low"] is None) == (rate["high"] is None) == (rate["trials"] == 0)


def check_slice(piece: dict[str, Any]) -> None:
    assert set(piece) == SLICE_KEYS
    check_rate(piece["goal"])
    for rate in piece["engagement"].values():
        check_rate(rate)
    assert set(piece["engagement"]) == {"open", "click", "unsubscribe", "bounce", "complaint"}
    if piece["lift"] is not None:
        assert set(piece["lift"]) == LIFT_KEYS and isinstance(piece["lift"]["significant"], bool)
    if piece["posterior"] is not None:
        assert set(piece["posterior"]) == {"mean", "low", "high", "p_best"}


def test_the_report_prints_tables_and_json_with_a_stable_schema(project: Project) -> None:
    write_campaign(project.path / "campaigns")
    empty = project.kairos("report", "spring-sale", check=True)
    assert "0 messages" in empty.stdout and "lift: not measurable yet" in empty.stdout

    truth = planted_project(project)
    shown = project.kairos("report", "spring-sale", "--by", "segment", check=True).stdout
    assert "spring-sale: goal convert (conversion within 48h)" in shown
    assert re.search(r"lift: \+\d+\.\d\d pts \[\+\d+\.\d\d, \+\d+\.\d\d\] \(95% CI\).*significant at 95%", shown)
    assert "Variants by segment" in shown and "bargain-hunters" in shown
    assert "note: 120 capped member(s) got nothing and are in neither group" in shown

    data = json.loads(project.kairos("report", "spring-sale", "--by", "segment", "--json", check=True).stdout)
    assert set(data) == {"schema", "campaign", "goal", "goal_event", "goal_window_seconds", "generated_at", "run",
                         "runs", "messages", "states", "overall", "variants", "channels", "split"}
    assert (data["schema"], data["campaign"], data["goal_event"]) == (1, "spring-sale", "conversion")
    assert data["goal_window_seconds"] == 48 * 3600 and data["messages"] == 6000
    assert data["states"] == truth.states
    for piece in [data["overall"], *data["variants"], *data["channels"]]:
        check_slice(piece)
    assert data["overall"]["goal"]["hits"] == truth.treated_goals
    assert data["overall"]["holdout"]["hits"] == truth.holdout_goals and data["overall"]["lift"]["significant"]
    assert [v["name"] for v in data["variants"]] == ["bold", "calm"]
    assert data["split"]["by"] == "segment" and [g["name"] for g in data["split"]["groups"]] == list(SEGMENTS)
    for group in data["split"]["groups"]:
        check_slice({k: v for k, v in group.items() if k != "variants"})
        assert [v["name"] for v in group["variants"]] == ["bold", "calm"]
    # the same sends judged by their opens: every planted open, none for the holdout
    opens = json.loads(project.kairos("report", "spring-sale", "--goal", "open", "--window", "2h", "--json",
                                      check=True).stdout)
    assert (opens["goal_event"], opens["goal_window_seconds"]) == ("open", 2 * 3600)
    assert opens["overall"]["goal"]["hits"] == truth.opens and opens["overall"]["holdout"]["hits"] == 0
    [run] = data["runs"]
    assert set(run) == {"id", "started_at", "trigger", "state", "states", "goal", "holdout"}
    only = json.loads(project.kairos("report", "spring-sale", "--run", str(run["id"]), "--json", check=True).stdout)
    assert only["run"] == run["id"] and only["overall"] == data["overall"]


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "no campaign 'nope'"),
    (["spring-sale", "--by", "planet"], "--by: expected one of segment, tier, got 'planet'"),
    (["spring-sale", "--by", "segment"], "--by: no segments are built yet; run `kairos segments build`"),
    (["spring-sale", "--run", "99"], "campaign 'spring-sale' has no run 99 (its runs: none yet)"),
    (["spring-sale", "--html", "missing/report.html"], "--html: missing is not a directory"),
    (["spring-sale", "--goal", "Sent"], "--goal: expected one of"),
    (["spring-sale", "--goal", "conversion", "--window", "soon"], "--window: expected a duration"),
])
def test_bad_input_exits_2_with_a_useful_message(project: Project, args: list[str], message: str) -> None:
    write_campaign(project.path / "campaigns")
    result = project.kairos("report", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_the_html_report_is_self_contained_and_shows_the_lift_and_charts(project: Project,
                                                                         browser: Browser) -> None:
    truth = planted_project(project)
    target = project.path / "report.html"
    project.kairos("report", "spring-sale", "--by", "segment", "--html", str(target), check=True)
    html = target.read_text()
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html, re.IGNORECASE)
    assert not re.search(r"(src|href)\s*=|url\(|@import", html, re.IGNORECASE)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    page.goto(target.as_uri())
    expect(page.locator("h1")).to_have_text("spring-sale")
    lift = truth.treated_goals / truth.treated - truth.holdout_goals / truth.holdout
    expect(page.locator("#lift")).to_have_text(f"{lift * 100:+.2f} pts")
    expect(page.locator("#lift-sentence")).to_contain_text("significant at 95%")
    charts = page.locator("figure.chart svg")
    expect(charts).to_have_count(4)
    assert charts.first.bounding_box() is not None and charts.first.locator("rect").count() == 2
    expect(page.locator("figure.chart").nth(2)).to_contain_text("bargain-hunters · bold")
    assert requests == [target.as_uri()]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "campaign-report.png"), full_page=True)
