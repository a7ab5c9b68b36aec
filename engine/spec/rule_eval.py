"""Evaluation of a parsed rule as numpy vector operations over columns.

A rule over a million recipients costs a few vector operations per node, never a Python call per
recipient. Each name or behavioural call is resolved to a :class:`Column` by the stage that
evaluates the rule (the audience over the event log, the content pool over its items); the pure
functions (``date``, ``days``, ``hours``, ``weeks``) and ``now()`` are computed here.

Kinds of values: ``bool``, ``number``, ``text``, ``date`` and ``duration`` (both float seconds,
dates since the Unix epoch, UTC) and ``mixed`` (raw values of several kinds). Attributes are
imported data of no declared type: where a comparison needs another kind than an attribute holds
(``attributes.signup_at >= date('2026-01-01')`` with ISO strings), the attribute is converted,
and a value that does not convert counts as missing. A missing value makes its comparison false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from engine.spec.rule_syntax import Binary, Call, Literal, Membership, Name, Node, Unary

BOOL, NUMBER, TEXT, DATE, DURATION, MIXED = "bool", "number", "text", "date", "duration", "mixed"
SECONDS = {"days": 86400.0, "hours": 3600.0, "weeks": 7 * 86400.0}
PURE_FUNCTIONS = ("date", *SECONDS)


def _inferred(values: np.ndarray) -> str:
    if values.dtype == bool:
        return BOOL
    return NUMBER if values.dtype.kind in "fiu" else TEXT


@dataclass(frozen=True)
class Column:
    """A vector of values with a mask of which are present (missing values compare false).

    ``kind`` is inferred from the dtype when not given. ``loose`` marks an attribute, whose
    values are converted to whatever kind a comparison needs.
    """

    values: np.ndarray
    present: np.ndarray
    kind: str = ""
    loose: bool = False

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", _inferred(self.values))


def column_from_values(values: list[Any] | np.ndarray) -> Column:
    """Build a typed :class:`Column` from Python values (numbers, strings, booleans, None)."""
    raw = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    present = np.fromiter((v is not None for v in raw), dtype=bool, count=len(raw))
    kinds = {type(v) for v in raw[present]}
    if kinds <= {bool, np.bool_}:
        return Column(np.where(present, raw, False).astype(bool), present, BOOL)
    if kinds <= {int, float, np.int64, np.float64}:
        return Column(np.where(present, raw, np.nan).astype(float), present, NUMBER)
    if kinds <= {str}:
        return Column(np.where(present, raw, ""), present, TEXT)
    return Column(raw, present, MIXED)


Resolver = Callable[[Name | Call], Column]


class RuleTypeError(ValueError):
    """A rule combines values of incompatible kinds (e.g. true/false with a number)."""

    def __init__(self, column: int, problem: str) -> None:
        self.column = column
        self.problem = problem
        super().__init__(f"column {column}: {problem}")


def to_seconds(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


def parse_instant(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 date or date-time (UTC when no offset), or None."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def convert(column: Column, kind: str) -> Column:
    """``column`` as ``kind``; values that do not convert become missing."""
    if column.kind == kind:
        return column
    size = len(column.values)
    if column.kind == MIXED:
        source = TEXT if kind == DATE else kind
        kept = column_from_values([v if _fits(v, source) else None for v in column.values])
        if not kept.present.any():
            return _empty(size, kind)
        return replace(convert(kept, kind), loose=column.loose)
    if column.kind == TEXT and kind in (NUMBER, DATE):
        parse: Callable[[str], float | None] = parse_instant if kind == DATE else _parse_number
        uniques, inverse = np.unique(column.values.astype(str), return_inverse=True)
        parsed = np.array([parse(u) for u in uniques], dtype=object)
        known = np.array([p is not None for p in parsed], dtype=bool)
        values = np.array([np.nan if p is None else p for p in parsed], dtype=float)
        return Column(values[inverse], column.present & known[inverse], kind)
    if column.kind == NUMBER and kind == TEXT:
        text = np.array([_format_number(v) for v in column.values], dtype=object)
        return Column(text, column.present.copy(), TEXT)
    return _empty(size, kind)


def _fits(value: Any, kind: str) -> bool:
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _empty(size: int, kind: str) -> Column:
    fill: Any = {BOOL: False, TEXT: ""}.get(kind, np.nan)
    dtype: Any = {BOOL: bool, TEXT: object}.get(kind, float)
    return Column(np.full(size, fill, dtype=dtype), np.zeros(size, dtype=bool), kind)


_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
            ">": np.greater, ">=": np.greater_equal}
_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
# (left kind, op, right kind) -> result kind: what type-checking (rules.py) and evaluation share
ARITHMETIC_KINDS = {
    (NUMBER, "+", NUMBER): NUMBER, (NUMBER, "-", NUMBER): NUMBER,
    (NUMBER, "*", NUMBER): NUMBER, (NUMBER, "/", NUMBER): NUMBER,
    (DATE, "+", DURATION): DATE, (DURATION, "+", DATE): DATE, (DATE, "-", DURATION): DATE,
    (DATE, "-", DATE): DURATION, (DURATION, "+", DURATION): DURATION, (DURATION, "-", DURATION): DURATION,
    (DURATION, "*", NUMBER): DURATION, (NUMBER, "*", DURATION): DURATION, (DURATION, "/", NUMBER): DURATION,
    (DURATION, "/", DURATION): NUMBER,
}


def evaluate(rule: Any, size: int, resolve: Resolver, now: datetime | None = None) -> np.ndarray:
    """Evaluate ``rule`` (a parsed Rule) over ``size`` rows; ``resolve`` supplies names and calls.

    :param now: the moment ``now()`` stands for; without it ``now()`` goes to ``resolve``.
    :returns: a boolean mask. A missing value makes its comparison false (and ``not`` of it true).
    """
    result = _Evaluator(size, resolve, now).condition(rule.root)
    return np.asarray(result.values & result.present, dtype=bool)


class _Evaluator:
    def __init__(self, size: int, resolve: Resolver, now: datetime | None) -> None:
        self.size = size
        self.resolve = resolve
        self.now = now

    def constant(self, value: Any, kind: str) -> Column:
        dtype: Any = {BOOL: bool, TEXT: object}.get(kind, float)
        return Column(np.full(self.size, value, dtype=dtype), np.ones(self.size, dtype=bool), kind)

    def condition(self, node: Node) -> Column:
        column = self.value(node)
        if column.loose:
            column = convert(column, BOOL)
        if column.kind != BOOL:
            raise RuleTypeError(getattr(node, "column", 1), f"expected a condition, got {_shown(column.kind)}")
        return column

    def value(self, node: Node) -> Column:
        if isinstance(node, Literal):
            value = node.value
            kind = BOOL if isinstance(value, bool) else TEXT if isinstance(value, str) else NUMBER
            return self.constant(value, kind)
        if isinstance(node, Name):
            column = self.resolve(node)
            return replace(column, loose=True) if node.path[0] == "attributes" else column
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Unary):
            if node.op == "not":
                operand = self.condition(node.operand)
                return Column(~(operand.values & operand.present), np.ones(self.size, dtype=bool), BOOL)
            operand = self.value(node.operand)
            if operand.loose:
                operand = convert(operand, NUMBER)
            if operand.kind not in (NUMBER, DURATION):
                raise RuleTypeError(node.column, f"'-' applies to a number, got {_shown(operand.kind)}")
            return Column(-operand.values, operand.present, operand.kind)
        if isinstance(node, Membership):
            return self.membership(node)
        if node.op in ("and", "or"):
            left, right = self.condition(node.left), self.condition(node.right)
            a, b = left.values & left.present, right.values & right.present
            return Column(a & b if node.op == "and" else a | b, np.ones(self.size, dtype=bool), BOOL)
        left, right = self.value(node.left), self.value(node.right)
        if node.op in _ARITHMETIC:
            return self.arithmetic(node, left, right)
        return self.compare(node, left, right)

    def call(self, node: Call) -> Column:
        if node.function in SECONDS:
            return self.constant(float(node.args[0]) * SECONDS[node.function], DURATION)
        if node.function == "date":
            return self.constant(parse_instant(str(node.args[0])), DATE)
        if node.function == "now" and self.now is not None:
            return self.constant(to_seconds(self.now), DATE)
        return self.resolve(node)

    def membership(self, node: Membership) -> Column:
        operand = self.value(node.operand)
        options = list(node.options)
        if options:
            wanted = BOOL if isinstance(options[0], bool) else TEXT if isinstance(options[0], str) else NUMBER
            if operand.kind != wanted:
                if not operand.loose:
                    raise RuleTypeError(node.column, f"cannot look for {_shown(wanted)} in {_shown(operand.kind)}")
                operand = convert(operand, wanted)
        dtype: Any = object if operand.values.dtype == object else operand.values.dtype
        hits = np.isin(operand.values, np.array(options, dtype=dtype)) & operand.present
        return Column(~hits if node.negated else hits, np.ones(self.size, dtype=bool), BOOL)

    def arithmetic(self, node: Binary, left: Column, right: Column) -> Column:
        left, right = _align_arithmetic(node.op, left, right)
        kind = ARITHMETIC_KINDS.get((left.kind, node.op, right.kind))
        if kind is None:
            raise RuleTypeError(node.column, f"cannot combine {_shown(left.kind)} and {_shown(right.kind)} "
                                f"with {node.op!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            values = _ARITHMETIC[node.op](left.values.astype(float), right.values.astype(float))
        return Column(values, left.present & right.present & np.isfinite(values), kind)

    def compare(self, node: Binary, left: Column, right: Column) -> Column:
        if left.kind != right.kind:
            if left.loose:
                left = convert(left, right.kind)
            elif right.loose:
                right = convert(right, left.kind)
        if left.kind != right.kind or left.kind == MIXED:
            raise RuleTypeError(node.column, f"cannot compare {_shown(left.kind)} with {_shown(right.kind)} "
                                f"using {node.op!r}")
        if left.kind == BOOL and node.op not in ("==", "!="):
            raise RuleTypeError(node.column, f"true/false values can only be compared with == or !=, not {node.op!r}")
        values = _COMPARE[node.op](left.values, right.values)
        return Column(np.asarray(values, dtype=bool), left.present & right.present, BOOL)


def _align_arithmetic(op: str, left: Column, right: Column) -> tuple[Column, Column]:
    """Convert a loose (attribute) side to the kind the other side's arithmetic needs."""
    def wanted(other: str) -> str:
        if other == NUMBER:
            return NUMBER
        if other == DATE:
            return DATE if op == "-" else DURATION
        return DATE if other == DURATION and op in ("+", "-") else NUMBER

    if left.loose and right.loose:
        return convert(left, NUMBER), convert(right, NUMBER)
    if left.loose:
        return convert(left, wanted(right.kind)), right
    if right.loose:
        return left, convert(right, NUMBER if op in ("*", "/") else wanted(left.kind))
    return left, right


def _shown(kind: str) -> str:
    return {BOOL: "true/false", NUMBER: "a number", TEXT: "text", DATE: "a date", DURATION: "a duration",
            MIXED: "values of mixed kinds"}.get(kind, kind)
