"""The rule language of ``[audience] where`` and ``[content] where``: parsed, typed, then vectorized.

No Python ``eval`` anywhere. A rule goes through three steps, each in its own module:

1. :mod:`engine.spec.rule_syntax` tokenizes and parses it by hand into a frozen tree (the
   grammar is in its docstring); hostile input (unbalanced parentheses, names that look like
   Python internals, very long or deep expressions) is refused there with the column.
2. This module checks the tree against its context: which names exist and what kind of value
   each holds, which functions may be called, with what arguments, and whether every operator
   gets the kinds it needs. Every error names the column and says what was expected.
3. :mod:`engine.spec.rule_eval` evaluates it as numpy vector operations over columns resolved by
   the stage (the audience over recipients and the event log; the content pool over items).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.spec.rule_eval import (
    ARITHMETIC_KINDS,
    BOOL,
    DATE,
    DURATION,
    NUMBER,
    TEXT,
    Column,
    Resolver,
    RuleTypeError,
    column_from_values,
    evaluate,
    parse_instant,
)
from engine.spec.rule_syntax import (
    MAX_DEPTH,
    MAX_RULE_LENGTH,
    Binary,
    Call,
    Literal,
    Membership,
    Name,
    Node,
    Parser,
    RuleSyntaxError,
    Unary,
    walk,
)

__all__ = [
    "AUDIENCE_FUNCTIONS", "CONTENT_FIELDS", "CONTENT_FUNCTIONS", "MAX_DEPTH", "MAX_RULE_LENGTH",
    "RECIPIENT_FIELDS", "TIERS", "Binary", "Call", "Column", "FunctionSpec", "Literal", "Membership", "Name",
    "Node", "Resolver", "Rule", "RuleSyntaxError", "RuleTypeError", "Unary", "column_from_values", "evaluate",
    "parse_rule", "pointer",
]

ANY = "any"  # an attribute: imported data whose kind is known only when it is read
TIERS = ("high", "medium", "low")
MAX_DAYS = 3650
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_+-]{0,99}$")


@dataclass(frozen=True)
class Argument:
    """One argument of a function: its Python type, what it is, and an optional extra check."""

    kind: type
    meaning: str
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class FunctionSpec:
    args: tuple[Argument, ...]
    returns: str
    meaning: str


def _days(value: Any) -> str | None:
    return None if 0 <= value <= MAX_DAYS else f"a number of days from 0 to {MAX_DAYS}"


def _event_type(value: Any) -> str | None:
    return None if _EVENT_TYPE.match(value) else "an event type such as 'click' or 'purchase' (lowercase)"


def _tier(value: Any) -> str | None:
    return None if value in TIERS else "one of " + ", ".join(repr(t) for t in TIERS)


def _segment(value: Any) -> str | None:
    return None if _SEGMENT.match(value) else "a segment name (see `kairos segments show`)"


def _instant(value: Any) -> str | None:
    return None if parse_instant(value) is not None else "an ISO 8601 date such as '2026-12-01' or '2026-12-01T09:00Z'"


def _amount(value: Any) -> str | None:
    return None if abs(value) <= 100_000 else "an amount up to 100000"


_DAYS = Argument(int, "a number of days", _days)
DATE_FUNCTIONS: dict[str, FunctionSpec] = {
    "date": FunctionSpec((Argument(str, "an ISO 8601 date", _instant),), DATE, "that moment (UTC without an offset)"),
    "days": FunctionSpec((Argument(float, "a number of days", _amount),), DURATION, "a duration"),
    "hours": FunctionSpec((Argument(float, "a number of hours", _amount),), DURATION, "a duration"),
    "weeks": FunctionSpec((Argument(float, "a number of weeks", _amount),), DURATION, "a duration"),
}
AUDIENCE_FUNCTIONS: dict[str, FunctionSpec] = {
    "clicks": FunctionSpec((_DAYS,), NUMBER, "clicks in the last N days"),
    "opens": FunctionSpec((_DAYS,), NUMBER, "opens in the last N days"),
    "sends": FunctionSpec((_DAYS,), NUMBER, "messages received in the last N days"),
    "conversions": FunctionSpec((_DAYS,), NUMBER, "conversions in the last N days"),
    "events": FunctionSpec((Argument(str, "an event type", _event_type), _DAYS), NUMBER,
                           "events of a type in the last N days"),
    "days_since": FunctionSpec((Argument(str, "an event type", _event_type),), NUMBER,
                               "days since the latest event of a type (missing if never)"),
    "topic_affinity": FunctionSpec((Argument(str, "a topic"),), NUMBER, "smoothed click rate on a topic"),
    "segment": FunctionSpec((Argument(str, "a segment name", _segment),), BOOL, "member of a persona segment"),
    "tier": FunctionSpec((Argument(str, "a propensity tier", _tier),), BOOL, "in a propensity tier"),
    "now": FunctionSpec((), DATE, "the moment the audience is built"),
    **DATE_FUNCTIONS,
}
CONTENT_FUNCTIONS: dict[str, FunctionSpec] = dict(DATE_FUNCTIONS)

RECIPIENT_FIELD_KINDS = {"id": TEXT, "email": TEXT, "timezone": TEXT, "locale": TEXT,
                         "consent_email": BOOL, "consent_push": BOOL}
CONTENT_FIELD_KINDS = {"id": TEXT, "title": TEXT, "url": TEXT, "topic": TEXT, "age_hours": NUMBER}
RECIPIENT_FIELDS = tuple(RECIPIENT_FIELD_KINDS)
CONTENT_FIELDS = tuple(CONTENT_FIELD_KINDS)
_FIELD_KINDS = {RECIPIENT_FIELDS: RECIPIENT_FIELD_KINDS, CONTENT_FIELDS: CONTENT_FIELD_KINDS}


@dataclass(frozen=True)
class Rule:
    """A parsed, type-checked rule: its text and its tree."""

    text: str
    root: Node

    def names(self) -> set[str]:
        found: set[str] = set()
        walk(self.root, lambda n: found.add(n.dotted) if isinstance(n, Name) else None)
        return found

    def calls(self) -> list[Call]:
        found: list[Call] = []
        walk(self.root, lambda n: found.append(n) if isinstance(n, Call) else None)
        return found

    def uses(self, function: str) -> bool:
        return any(call.function == function for call in self.calls())


def parse_rule(text: str, fields: tuple[str, ...], functions: Mapping[str, FunctionSpec]) -> Rule:
    """Parse and check ``text``, or raise :class:`RuleSyntaxError` with the column and what was expected.

    :param fields: the names the context offers (besides ``attributes.<name>``).
    :param functions: the functions the context offers.
    """
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(MAX_RULE_LENGTH + 1, f"a rule may be at most {MAX_RULE_LENGTH} characters long "
                              f"(this one has {len(text)})")
    if not text.strip():
        raise RuleSyntaxError(1, "the rule is empty; expected a condition such as clicks(30) >= 1")
    known = ", ".join(f"{f}()" for f in functions) or "none here"
    root = Parser(text, lambda name: name in functions, known).parse()
    kinds = _FIELD_KINDS.get(fields) or dict.fromkeys(fields, ANY)
    checker = _Checker(fields, kinds, functions)
    kind = checker.kind(root)
    if kind not in (BOOL, ANY):
        raise RuleSyntaxError(_column(root), f"expected a condition (a comparison, 'in', 'and', 'or' ...), "
                              f"but the rule is {_shown(kind)}" + _hint(root, kind))
    return Rule(text, root)


def pointer(text: str, column: int, width: int = 100) -> str:
    """The rule (or the stretch of a long one around ``column``) with a caret under the column."""
    start = max(0, min(column - 1 - width // 2, len(text) - width))
    shown = text[start:start + width].replace("\n", " ")
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + width < len(text) else ""
    return f"{prefix}{shown}{suffix}\n{' ' * (len(prefix) + column - 1 - start)}^"


def _column(node: Node) -> int:
    while isinstance(node, Binary):  # a binary node's column is its operator; point at its start
        node = node.left
    return node.column


def _shown(kind: str) -> str:
    return {BOOL: "true/false", NUMBER: "a number", TEXT: "text", DATE: "a date", DURATION: "a duration",
            ANY: "an attribute"}.get(kind, kind)


def _hint(node: Node, kind: str) -> str:
    if kind == NUMBER and isinstance(node, Call):
        return f"; did you mean {node.function}(...) >= 1?"
    if kind == DURATION:
        return "; compare it, e.g. now() - attributes.signup_at > days(30)"
    return ""


_COMPARABLE = {BOOL: ("==", "!="), NUMBER: None, TEXT: None, DATE: None, DURATION: None}


class _Checker:
    """Infers the kind of every node, refusing what cannot be evaluated."""

    def __init__(self, fields: tuple[str, ...], kinds: Mapping[str, str],
                 functions: Mapping[str, FunctionSpec]) -> None:
        self.fields = fields
        self.kinds = kinds
        self.functions = functions

    def kind(self, node: Node) -> str:
        if isinstance(node, Literal):
            value = node.value
            return BOOL if isinstance(value, bool) else TEXT if isinstance(value, str) else NUMBER
        if isinstance(node, Name):
            return self.name(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Unary):
            operand = self.kind(node.operand)
            if node.op == "not":
                self.condition(operand, node.operand, "'not' applies to a condition")
                return BOOL
            if operand not in (NUMBER, DURATION, ANY):
                raise RuleSyntaxError(node.column, f"'-' applies to a number, got {_shown(operand)}")
            return NUMBER if operand == ANY else operand
        if isinstance(node, Membership):
            operand = self.kind(node.operand)
            wanted = _list_kind(node.options)
            if operand not in (ANY, TEXT, NUMBER) or (wanted is not None and operand not in (ANY, wanted)):
                raise RuleSyntaxError(node.column, f"'in' compares {_shown(operand)} with a list of "
                                      f"{_plural(wanted or operand)}; expected a list of {_plural(operand)}")
            return BOOL
        left, right = self.kind(node.left), self.kind(node.right)
        if node.op in ("and", "or"):
            self.condition(left, node.left, f"'{node.op}' joins conditions")
            self.condition(right, node.right, f"'{node.op}' joins conditions")
            return BOOL
        if node.op in ("+", "-", "*", "/"):
            return self.arithmetic(node, left, right)
        return self.comparison(node, left, right)

    def condition(self, kind: str, node: Node, problem: str) -> None:
        if kind not in (BOOL, ANY):
            raise RuleSyntaxError(_column(node), f"{problem}, but this is {_shown(kind)}" + _hint(node, kind))

    def name(self, node: Name) -> str:
        if node.path[0] == "attributes":
            if len(node.path) != 2:
                raise RuleSyntaxError(node.column, "expected attributes.<name>, e.g. attributes.plan")
            return ANY
        if len(node.path) != 1 or node.path[0] not in self.fields:
            hint = " (functions are called with parentheses)" if node.dotted in self.functions else ""
            raise RuleSyntaxError(node.column, f"unknown name {node.dotted!r}{hint}; expected one of "
                                  + ", ".join(self.fields) + " or attributes.<name>")
        return self.kinds[node.path[0]]

    def call(self, node: Call) -> str:
        spec = self.functions[node.function]
        if len(node.args) != len(spec.args):
            wanted = ", ".join(a.meaning for a in spec.args) or "no arguments"
            raise RuleSyntaxError(node.column, f"{node.function}() takes {len(spec.args)} argument(s) "
                                  f"({wanted}), got {len(node.args)}")
        columns = node.arg_columns or (node.column,) * len(node.args)
        for value, argument, column in zip(node.args, spec.args, columns, strict=True):
            fits = (isinstance(value, argument.kind) and not isinstance(value, bool)) or \
                (argument.kind is float and isinstance(value, int) and not isinstance(value, bool))
            if not fits:
                raise RuleSyntaxError(column, f"{node.function}() expects {argument.meaning} "
                                      f"({_type_name(argument.kind)}) here, got {value!r}")
            problem = argument.check(value) if argument.check else None
            if problem is not None:
                raise RuleSyntaxError(column, f"{node.function}() expects {problem}, got {value!r}")
        return spec.returns

    def arithmetic(self, node: Binary, left: str, right: str) -> str:
        if ANY in (left, right):
            other = right if left == ANY else left
            if other in (ANY, NUMBER):
                return NUMBER
            if other == DATE and node.op == "-":
                return DURATION
            if other == DURATION and node.op in ("+", "-"):
                return DATE
            if other == DURATION and node.op in ("*", "/"):
                return DURATION
        result = ARITHMETIC_KINDS.get((left, node.op, right))
        if result is None:
            raise RuleSyntaxError(node.column, f"cannot combine {_shown(left)} and {_shown(right)} with "
                                  f"{node.op!r}" + (" (durations are written days(n), hours(n) or weeks(n))"
                                                    if DATE in (left, right) or DURATION in (left, right) else ""))
        return result

    def comparison(self, node: Binary, left: str, right: str) -> str:
        if ANY not in (left, right):
            if left != right:
                hint = ""
                if {left, right} == {DURATION, NUMBER}:
                    hint = "; write the number as a duration, e.g. days(30)"
                raise RuleSyntaxError(node.column, f"cannot compare {_shown(left)} with {_shown(right)} using "
                                      f"{node.op!r}" + hint)
            allowed = _COMPARABLE.get(left)
            if allowed is not None and node.op not in allowed:
                raise RuleSyntaxError(node.column, f"true/false values are compared with == or !=, not {node.op!r}")
        return BOOL


def _plural(kind: str) -> str:
    return {BOOL: "true/false values", NUMBER: "numbers", TEXT: "'strings'"}.get(kind, _shown(kind))


def _list_kind(options: tuple[Any, ...]) -> str | None:
    if not options:
        return None
    first = options[0]
    return BOOL if isinstance(first, bool) else TEXT if isinstance(first, str) else NUMBER


def _type_name(kind: type) -> str:
    return {int: "a whole number", str: "a 'string'", float: "a number"}.get(kind, kind.__name__)
