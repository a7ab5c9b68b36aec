"""The rule language: what it refuses (with the column and what was expected) and what it computes."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from engine.spec.rules import (
    AUDIENCE_FUNCTIONS,
    CONTENT_FIELDS,
    CONTENT_FUNCTIONS,
    RECIPIENT_FIELDS,
    Call,
    Column,
    Name,
    RuleSyntaxError,
    column_from_values,
    evaluate,
    parse_rule,
)


def audience_rule(text: str):  # type: ignore[no-untyped-def]
    return parse_rule(text, RECIPIENT_FIELDS, AUDIENCE_FUNCTIONS)


@pytest.mark.parametrize(("text", "column", "expected"), [
    ("(clicks(30) >= 1", 17, "unbalanced '(' at column 1: expected ')'"),
    ("clicks(30) >= 1)", 16, "unbalanced ')'"),
    ("((opens(7) > 0) and (clicks(3) > 1)", 36, "unbalanced '(' at column 1"),
    ("click(30) >= 1", 1, "unknown function 'click'; expected one of clicks()"),
    ("system('rm -rf /') == 0", 1, "unknown function 'system'"),
    ("clicks('30') > 1", 8, "clicks() expects a number of days (a whole number) here, got '30'"),
    ("clicks(2.5) > 1", 8, "a whole number"),
    ("clicks(-1) > 1", 8, "a number of days from 0 to 3650"),
    ("events(90, 'purchase') > 1", 8, "events() expects an event type"),
    ("days_since(click) < 3", 12, "did you mean 'click' in quotes?"),
    ("tier('hot')", 6, "one of 'high', 'medium', 'low'"),
    ("segment('Sports Fans')", 9, "a segment name"),
    ("date('2026-13-45') < now()", 6, "an ISO 8601 date"),
    ("clicks(30, 7) > 1", 1, "takes 1 argument(s)"),
    ("__import__('os').system('touch pwned')", 1, "names may not start with '_'"),
    ("attributes.__class__ == 'x'", 1, "names may not start with '_'"),
    ("attributes.plan.__globals__ == 1", 1, "names may not start with '_'"),
    ("id.__len__ > 1", 1, "names may not start with '_'"),
    ("attributes.plan.upper == 'PRO'", 1, "expected attributes.<name>"),
    ("password == 'x'", 1, "unknown name 'password'"),
    ("clicks", 1, "functions are called with parentheses"),
    ("clicks(30)", 1, "expected a condition"),
    ("not opens(7)", 5, "'not' applies to a condition"),
    ("clicks(30) >= 1 and opens(7)", 21, "'and' joins conditions"),
    ("email > 3", 7, "cannot compare text with a number"),
    ("consent_email < true", 15, "compared with == or !="),
    ("now() - attributes.signup_at > 30", 30, "write the number as a duration, e.g. days(30)"),
    ("now() + now() > now()", 7, "cannot combine a date and a date"),
    ("email in [1, 2]", 7, "expected a list of 'strings'"),
    ("attributes.plan in ['pro', 1]", 20, "a list holds values of one kind"),
    ("attributes.plan in [opens(7)]", 21, "may hold only numbers, 'strings', true or false"),
    ("attributes.plan = 'pro'", 17, "write '=='"),
    ("clicks(30) >= 1 && opens(7) > 0", 17, "write 'and'"),
    ("attributes.plan == 'pro", 20, "unterminated string"),
    ("attributes.plan == ", 20, "expected a value, a name or '('"),
    ("", 1, "the rule is empty"),
    ("   ", 1, "the rule is empty"),
    ("clicks(30) >= 1 or " * 300 + "true", 4001, "at most 4000 characters"),
    ("1" + " + 1" * 300 + " > 2", 1, "more than 200 operators chained"),
    ("(" * 80 + "true" + ")" * 80, 62, "nested more than 60 levels deep"),
    ("not " * 80 + "true", 245, "nested more than 60 levels deep"),
])
def test_hostile_and_mistaken_rules_are_refused_with_the_column(text: str, column: int, expected: str) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        audience_rule(text)
    assert caught.value.column == column, caught.value
    assert expected in caught.value.problem


def test_content_rules_offer_item_names_and_pure_date_functions_only() -> None:
    parse_rule("topic in ['sports', 'tech'] and age_hours < 72 and attributes.starts >= date('2026-12-01')",
               CONTENT_FIELDS, CONTENT_FUNCTIONS)
    with pytest.raises(RuleSyntaxError, match="unknown function 'clicks'"):
        parse_rule("clicks(30) > 1", CONTENT_FIELDS, CONTENT_FUNCTIONS)
    with pytest.raises(RuleSyntaxError, match="unknown name 'email'"):
        parse_rule("email == 'x'", CONTENT_FIELDS, CONTENT_FUNCTIONS)


def test_a_rule_knows_the_names_and_functions_it_uses() -> None:
    rule = audience_rule("attributes.plan == 'pro' and (tier('high') or segment('sports-fans')) "
                         "and consent_email")
    assert rule.names() == {"attributes.plan", "consent_email"}
    assert rule.uses("tier") and rule.uses("segment") and not rule.uses("clicks")


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def run(text: str, columns: dict[str, list[object]], calls: dict[str, list[float]] | None = None) -> list[bool]:
    rule = audience_rule(text)
    size = len(next(iter(columns.values())))

    def resolve(node: Name | Call) -> Column:
        if isinstance(node, Name):
            return column_from_values(columns[node.dotted])
        values = np.array((calls or {})[node.function], dtype=float)
        return Column(values, ~np.isnan(values))

    return evaluate(rule, size, resolve, NOW).tolist()  # type: ignore[no-any-return]


def test_missing_attributes_compare_false_and_not_of_them_is_true() -> None:
    plan = {"attributes.plan": ["pro", None, "free"]}
    assert run("attributes.plan == 'pro'", plan) == [True, False, False]
    assert run("attributes.plan != 'pro'", plan) == [False, False, True]
    assert run("not attributes.plan == 'pro'", plan) == [False, True, True]
    assert run("attributes.plan not in ['pro', 'team']", plan) == [False, True, True]


def test_attributes_of_another_kind_than_the_comparison_needs_count_as_missing() -> None:
    ages = {"attributes.age": [34, "thirty", 19, None]}
    assert run("attributes.age >= 21", ages) == [True, False, False, False]
    assert run("attributes.age * 2 > 40", ages) == [True, False, False, False]
    flags = {"attributes.vip": [True, "yes", False, None]}
    assert run("attributes.vip", flags) == [True, False, False, False]
    assert run("not attributes.vip", flags) == [False, True, True, True]


def test_date_arithmetic_over_iso_attributes() -> None:
    signups = {"attributes.signup_at": ["2026-11-20T08:00:00+00:00", "2026-09-01", "not a date", None]}
    assert run("now() - attributes.signup_at < days(30)", signups) == [True, False, False, False]
    assert run("attributes.signup_at >= date('2026-10-01')", signups) == [True, False, False, False]
    assert run("attributes.signup_at + weeks(14) > now()", signups) == [True, True, False, False]
    assert run("(now() - attributes.signup_at) / days(1) > 60", signups) == [False, True, False, False]
    assert run("date('2026-12-01T13:00:00+01:00') == now()", signups) == [True] * 4
    assert run("now() - hours(36) > date('2026-11-29')", signups) == [True] * 4


def test_behavioural_columns_combine_with_arithmetic_and_logic() -> None:
    columns = {"attributes.plan": ["pro", "free", "free", "pro"]}
    calls = {"clicks": [0, 3, 1, 5], "opens": [1, 4, 0, 9], "days_since": [2, np.nan, 40, 1]}
    assert run("clicks(30) / opens(30) >= 0.5 and attributes.plan == 'pro'", columns, calls) == \
        [False, False, False, True]
    assert run("days_since('click') < 7 or clicks(30) + opens(30) > 6", columns, calls) == [True, True, False, True]
    assert run("not days_since('click') < 7", columns, calls) == [False, True, True, False]
    assert run("-clicks(30) < -2", columns, calls) == [False, True, False, True]
