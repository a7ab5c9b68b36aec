from __future__ import annotations

import shutil
from pathlib import Path

from engine.schedule.registry import CampaignRegistry
from tests.conftest import ROOT

CAMPAIGN = """
[campaign]
name = "{name}"
goal = "click"
[content]
pool = "p"
[[variants]]
name = "v"
subject = "{subject}"
template = "digest"
"""


def test_reload_picks_up_changes_refuses_invalid_ones_and_keeps_the_last_valid(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    registry = CampaignRegistry(campaigns, tmp_path / "templates")
    first = campaigns / "a.toml"
    first.write_text(CAMPAIGN.format(name="a", subject="One"))
    result = registry.reload()
    assert [s.name for s in result.changed] == ["a"] and not result.refused
    assert not registry.reload()  # nothing changed

    first.write_text(CAMPAIGN.format(name="a", subject="Two"))
    result = registry.reload()
    assert [s.variants[0].subject for s in result.changed] == ["Two"]

    first.write_text(CAMPAIGN.format(name="a", subject="Three").replace('goal = "click"', 'goal = 7'))
    result = registry.reload()
    assert not result.changed and len(result.refused) == 1
    assert result.refused[0].field == "campaign.goal" and result.refused[0].path == first
    assert registry.specs["a"].variants[0].subject == "Two"  # the last valid version keeps running

    (campaigns / "b.yaml").write_text("campaign:\n  name: a\n  goal: click\ncontent:\n  pool: p\nvariants:\n"
                                      "  - {name: v, subject: x, template: digest}\n")
    result = registry.reload()
    assert any("already the name of" in str(e) for e in result.refused)

    (campaigns / "b.yaml").unlink()
    first.unlink()
    result = registry.reload()
    assert result.removed == ("a",) and registry.specs == {}
