"""Bad rules through the real `kairos validate`: exit code 2, file:line, field and column, nothing run."""

from __future__ import annotations

import pytest

from tests.conftest import Project

CAMPAIGN = """
[campaign]
name = "hostile"
goal = "click"

[audience]
where = {where}

[content]
pool = "articles"

[[variants]]
name = "a"
subject = "Hello"
template = "digest"
"""


def write_campaign(project: Project, where: str) -> None:
    quoted = "'''" + where + "'''"
    project.write("campaigns/hostile.toml", CAMPAIGN.replace("{where}", quoted))


@pytest.mark.parametrize(("where", "column", "expected"), ids=lambda v: str(v)[:30], argvalues=[
    ("(clicks(30) >= 1 and opens(7) > 0", 34, "unbalanced '(' at column 1"),
    ("clicks(30) >= 1)", 16, "unbalanced ')'"),
    ("purchases(90) >= 1", 1, "unknown function 'purchases'; expected one of clicks()"),
    ("events(90, 'purchase') >= 1", 8, "events() expects an event type"),
    ("clicks('thirty') >= 1", 8, "clicks() expects a number of days"),
    ("__import__('os').system('touch pwned') == 0", 1, "names may not start with '_'"),
    ("attributes.__class__.__mro__ == 1", 1, "names may not start with '_'"),
    ("attributes.plan == 'pro' or " * 200 + "true", 4001, "a rule may be at most 4000 characters long"),
    ("tier('platinum')", 6, "tier() expects one of 'high', 'medium', 'low'"),
])
def test_validate_refuses_bad_rules_with_exit_code_2(project: Project, where: str, column: int,
                                                     expected: str) -> None:
    write_campaign(project, where)
    result = project.kairos("validate")
    assert result.returncode == 2, result.stderr
    assert f"hostile.toml:6: audience.where (column {column}): {expected}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "1 of 1 campaign file(s) invalid" in result.stderr
    # nothing executed, nothing stored
    assert not (project.path / "pwned").exists()
    assert not (project.path / "kairos.db").exists()


def test_the_error_shows_the_rule_with_a_caret_under_the_column(project: Project) -> None:
    write_campaign(project, "clicks(30) >= 1 and opens('7') > 0")
    result = project.kairos("validate")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    rule_line = next(i for i, line in enumerate(lines) if "clicks(30) >= 1 and opens('7') > 0" in line)
    caret = lines[rule_line + 1]
    assert caret.index("^") - lines[rule_line].index("clicks") == len("clicks(30) >= 1 and opens(")


def test_a_good_rule_with_every_construct_validates(project: Project) -> None:
    write_campaign(project, "(attributes.plan in ['pro', 'team'] or tier('high') or segment('sports-politics')) "
                            "and clicks(30) >= 1 and not opens(7) > 10 and events('purchase', 90) + 1 > 0 "
                            "and days_since('click') < 14 and topic_affinity('sports') > 0.5 "
                            "and now() - attributes.signup_at > days(30) and consent_email == true")
    result = project.kairos("validate")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_predicted_and_tiers_keys_are_checked(project: Project) -> None:
    project.write("campaigns/p.toml", CAMPAIGN.replace("where = {where}",
                                                        "predicted = { min_probability = 0.2, top_percent = 5 }"))
    result = project.kairos("validate")
    assert result.returncode == 2
    assert "p.toml:6: audience.predicted: expected exactly one of min_probability" in result.stderr
    project.write("campaigns/p.toml", CAMPAIGN.replace("where = {where}", "predicted = { top_percent = 150 }"))
    result = project.kairos("validate")
    assert "audience.predicted.top_percent: expected a percentage above 0 and at most 100, got 150" in result.stderr
    project.write("campaigns/p.toml", CAMPAIGN.replace("where = {where}", "tiers = { high = 40, medium = 30 }"))
    result = project.kairos("validate")
    assert result.returncode == 2
    assert "audience.tiers.medium: expected a top percentage at least high's (40)" in result.stderr
