"""`kairos plan`: the plan JSONL of DESIGN.md, with nothing sent and nothing stored."""

from __future__ import annotations

import json
from collections import defaultdict

from sqlmodel import func, select

from engine.store import Message, Run
from tests.conftest import Project, SmtpServer
from tests.schedule.test_send_smtp import seed_project


def test_plan_writes_one_row_per_audience_member_and_stores_nothing(project: Project,
                                                                    smtp_server: SmtpServer) -> None:
    seed_project(project)
    project.write("campaigns/news.toml", (project.path / "campaigns/news.toml").read_text()
                  .replace("exploration = 0.0", "exploration = 0.3").replace("items = 2", "items = 3"))
    result = project.kairos("plan", "news", "--output", "plan.jsonl", "--candidates", "--seed", "5", check=True)
    assert "wrote 8 plan rows" in result.stdout
    rows = [json.loads(line) for line in (project.path / "plan.jsonl").read_text().splitlines()]
    by_id = {row["recipient_id"]: row for row in rows}
    assert set(by_id) == {"r1", "r2", "r4", "r5", "r7", "r8", "r10", "r11"}  # pro plan only
    assert by_id["r4"]["status"] == "no_consent" and by_id["r4"]["items"] == []
    for row in rows:
        if row["status"] != "send":
            continue
        assert row["channel"] == "email" and row["variant"] in ("a", "b") and row["send_at"]
        assert [item["slot"] for item in row["items"]] == [0, 1, 2]
        assert all({"id", "slot", "score", "probability"} <= set(item) for item in row["items"])
        per_slot: dict[int, float] = defaultdict(float)
        for candidate in row["candidates"]:
            per_slot[candidate["slot"]] += candidate["probability"]
        assert per_slot.keys() == {0, 1, 2}
        assert all(abs(total - 1.0) < 1e-9 for total in per_slot.values())
        # the logged probability of each chosen item is its candidate probability in that slot
        candidates = {(c["id"], c["slot"]): c["probability"] for c in row["candidates"]}
        for item in row["items"]:
            assert abs(candidates[(item["id"], item["slot"])] - item["probability"]) < 1e-12
        chosen = [item["id"] for item in row["items"]]
        assert len(set(chosen)) == 3
        expected = row["channel_probability"] * row["variant_probability"]
        for item in row["items"]:
            expected *= item["probability"]
        assert abs(row["propensity"] - expected) < 1e-12
    assert smtp_server.messages == []
    with project.store().session() as session:
        assert session.exec(select(func.count()).select_from(Run)).one() == 0
        assert session.exec(select(func.count()).select_from(Message)).one() == 0
