"""The [optimize] keys (and quiet hours) validate into typed values, or fail naming file, line, field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import SpecError
from engine.spec.load import load_campaign

BASE = """[campaign]
name = "c"
goal = "click"

[schedule]
quiet_hours = {quiet}

[content]
pool = "p"

[[variants]]
name = "a"
subject = "A"
template = "t"

[optimize]
{optimize}
"""


def load(tmp_path: Path, optimize: str, quiet: str = '["22:00", "07:00"]') -> object:
    (tmp_path / "t.txt").write_text("x")
    path = tmp_path / "c.toml"
    path.write_text(BASE.format(optimize=optimize, quiet=quiet))
    return load_campaign(path, tmp_path)


def test_every_optimize_key_is_read(tmp_path: Path) -> None:
    spec = load(tmp_path, 'bandit = "ucb"\nexploration = 0.2\nitem_exploration = "softmax"\ntemperature = 0.3\n'
                          'staged = { explore = 0.1, wait = "6h" }\n'
                          'guardrail = { unsubscribe_rate = 0.01, complaint_rate = 0.001, min_sends = 500 }\n'
                          'confidence = 0.9\nexploration_decay = 5000')
    optimize = spec.optimize  # type: ignore[attr-defined]
    assert (optimize.bandit, optimize.exploration, optimize.item_exploration, optimize.temperature) == \
        ("ucb", 0.2, "softmax", 0.3)
    assert optimize.staged.explore == 0.1 and optimize.staged.wait == timedelta(hours=6)
    assert (optimize.guardrail.unsubscribe_rate, optimize.guardrail.complaint_rate, optimize.guardrail.min_sends) \
        == (0.01, 0.001, 500)
    assert optimize.confidence == 0.9 and optimize.exploration_decay == 5000
    assert spec.schedule.quiet_hours == (22 * 60, 7 * 60)  # type: ignore[attr-defined]
    assert load(tmp_path, "").optimize.confidence is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("optimize", "quiet", "field"), [
    ('item_exploration = "greedy"', '["22:00", "07:00"]', "optimize.item_exploration"),
    ('bandit = "bayes"', '["22:00", "07:00"]', "optimize.bandit"),
    ('staged = { explore = 0.1 }', '["22:00", "07:00"]', "optimize.staged.wait"),
    ('guardrail = { unsubscribe = 0.1 }', '["22:00", "07:00"]', "optimize.guardrail.unsubscribe"),
    ('temperature = 0', '["22:00", "07:00"]', "optimize.temperature"),
    ('confidence = 0.2', '["22:00", "07:00"]', "optimize.confidence"),
    ('confidence = "high"', '["22:00", "07:00"]', "optimize.confidence"),
    ('exploration_decay = 0', '["22:00", "07:00"]', "optimize.exploration_decay"),
    ('exploration_decay = 2.5', '["22:00", "07:00"]', "optimize.exploration_decay"),
    ("", '["07:00", "07:00"]', "schedule.quiet_hours"),
])
def test_bad_values_name_the_field(tmp_path: Path, optimize: str, quiet: str, field: str) -> None:
    with pytest.raises(SpecError) as raised:
        load(tmp_path, optimize, quiet)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{tmp_path / 'c.toml'}:")
