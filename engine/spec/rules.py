"""The rule language of ``[audience] where`` and ``[content] where``, parsed into a frozen AST.

No Python ``eval`` anywhere: a rule is tokenized and parsed by hand into the small tree below,
checked against the names and functions its context allows, and later evaluated over numpy
columns (see :func:`evaluate`) so a rule costs a few vector operations, not a Python call per
recipient.

Grammar (lowest precedence first)::

    rule       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum | ["not"] "in" list]
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | STRING | true | false | name ["(" args ")"] | "(" rule ")"
    name       := IDENT ("." IDENT)*
    list       := "[" [atom ("," atom)*] "]"

Names are the fields of the context (``email``, ``timezone`` ... for recipients; ``topic``,
``age_hours`` ... for content) or ``attributes.<name>``. Names that start with an underscore are
refused, so nothing can reach for Python internals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_RULE_LENGTH = 4000
MAX_DEPTH = 60

# Behavioural functions: name -> argument types. Their implementations live with the stage that
# evaluates the rule (the audience, over the event log).
FunctionSignature = tuple[type, ...]
AUDIENCE_FUNCTIONS: dict[str, FunctionSignature] = {
    "clicks": (int,),
    "opens": (int,),
    "sends": (int,),
    "conversions": (int,),
    "events": (str, int),
    "days_since": (str,),
    "topic_affinity": (str,),
}
RECIPIENT_FIELDS = ("id", "email", "timezone", "locale", "consent_email", "consent_push")
CONTENT_FIELDS = ("id", "title", "url", "topic", "age_hours")


class RuleSyntaxError(ValueError):
    """A rule does not parse; ``column`` is 1-based within the rule text."""

    def __init__(self, column: int, problem: str) -> None:
        self.column = column
        self.problem = problem
        super().__init__(f"column {column}: {problem}")


# --- the tree ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Literal:
    value: Any
    column: int


@dataclass(frozen=True)
class Name:
    path: tuple[str, ...]
    column: int

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Any, ...]
    column: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node
    column: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node
    column: int


@dataclass(frozen=True)
class Membership:
    operand: Node
    options: tuple[Any, ...]
    negated: bool
    column: int


Node = Literal | Name | Call | Unary | Binary | Membership


@dataclass(frozen=True)
class Rule:
    """A parsed rule: its text and its tree."""

    text: str
    root: Node

    def names(self) -> set[str]:
        found: set[str] = set()
        _walk(self.root, lambda n: found.add(n.dotted) if isinstance(n, Name) else None)
        return found

    def calls(self) -> list[Call]:
        found: list[Call] = []
        _walk(self.root, lambda n: found.append(n) if isinstance(n, Call) else None)
        return found


def _walk(node: Node, visit: Callable[[Node], None]) -> None:
    visit(node)
    if isinstance(node, Unary):
        _walk(node.operand, visit)
    elif isinstance(node, Binary):
        _walk(node.left, visit)
        _walk(node.right, visit)
    elif isinstance(node, Membership):
        _walk(node.operand, visit)


# --- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|\.)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            if text[position] in "'\"":
                raise RuleSyntaxError(position + 1, "unterminated string")
            raise RuleSyntaxError(position + 1, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            word = match.group()
            if kind == "name" and word in _KEYWORDS:
                kind = word
            tokens.append(_Token(kind, word, position + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


# --- the parser -------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str, fields: tuple[str, ...], functions: Mapping[str, FunctionSignature]):
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0
        self.fields = fields
        self.functions = functions

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def expect(self, text: str, what: str) -> _Token:
        if self.token.text != text or self.token.kind in ("string",):
            raise RuleSyntaxError(self.token.column, f"expected {what}, found {self._found()}")
        return self.advance()

    def _found(self) -> str:
        return "the end of the rule" if self.token.kind == "end" else repr(self.token.text)

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleSyntaxError(self.token.column, f"nested more than {MAX_DEPTH} levels deep")

    def parse(self) -> Node:
        node = self.parse_or()
        if self.token.kind != "end":
            if self.token.text == ")":
                raise RuleSyntaxError(self.token.column, "unbalanced ')': no '(' to close")
            raise RuleSyntaxError(self.token.column, f"expected 'and', 'or' or the end, found {self._found()}")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.token.kind == "or":
            column = self.advance().column
            node = Binary("or", node, self.parse_and(), column)
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.token.kind == "and":
            column = self.advance().column
            node = Binary("and", node, self.parse_not(), column)
        return node

    def parse_not(self) -> Node:
        if self.token.kind == "not":
            column = self.advance().column
            self.nested()
            operand = self.parse_not()
            self.depth -= 1
            return Unary("not", operand, column)
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        left = self.parse_sum()
        token = self.token
        if token.kind == "op" and token.text in ("==", "!=", "<", "<=", ">", ">="):
            self.advance()
            return Binary(token.text, left, self.parse_sum(), token.column)
        negated = False
        if token.kind == "not" and self.tokens[self.index + 1].kind == "in":
            self.advance()
            negated = True
        if self.token.kind == "in":
            column = self.advance().column
            return Membership(left, self.parse_list(), negated, column)
        if negated:
            raise RuleSyntaxError(self.token.column, "expected 'in' after 'not'")
        return left

    def parse_sum(self) -> Node:
        node = self.parse_product()
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            token = self.advance()
            node = Binary(token.text, node, self.parse_product(), token.column)
        return node

    def parse_product(self) -> Node:
        node = self.parse_unary()
        while self.token.kind == "op" and self.token.text in ("*", "/"):
            token = self.advance()
            node = Binary(token.text, node, self.parse_unary(), token.column)
        return node

    def parse_unary(self) -> Node:
        if self.token.kind == "op" and self.token.text == "-":
            column = self.advance().column
            self.nested()
            operand = self.parse_unary()
            self.depth -= 1
            return Unary("-", operand, column)
        return self.parse_atom()

    def parse_list(self) -> tuple[Any, ...]:
        self.expect("[", "'[' to start a list")
        values: list[Any] = []
        while self.token.text != "]" or self.token.kind == "string":
            atom = self.parse_atom()
            if not isinstance(atom, Literal):
                raise RuleSyntaxError(atom.column, "a list holds only numbers, strings, true or false")
            values.append(atom.value)
            if self.token.text == ",":
                self.advance()
            elif self.token.text != "]":
                raise RuleSyntaxError(self.token.column, f"expected ',' or ']', found {self._found()}")
        self.advance()
        return tuple(values)

    def parse_atom(self) -> Node:
        token = self.token
        if token.kind == "number":
            self.advance()
            return Literal(float(token.text) if "." in token.text else int(token.text), token.column)
        if token.kind == "string":
            self.advance()
            return Literal(_unquote(token.text), token.column)
        if token.kind in ("true", "false"):
            self.advance()
            return Literal(token.kind == "true", token.column)
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.nested()
            node = self.parse_or()
            self.depth -= 1
            if self.token.text != ")":
                raise RuleSyntaxError(self.token.column,
                                      f"unbalanced '(' at column {token.column}: expected ')', found {self._found()}")
            self.advance()
            return node
        if token.kind == "name":
            return self.parse_name()
        raise RuleSyntaxError(token.column, f"expected a value, a name or '(', found {self._found()}")

    def parse_name(self) -> Node:
        first = self.advance()
        if self.token.text == "(" and self.token.kind == "op":
            return self.parse_call(first)
        path = [first.text]
        while self.token.kind == "op" and self.token.text == ".":
            self.advance()
            if self.token.kind != "name":
                raise RuleSyntaxError(self.token.column, f"expected a name after '.', found {self._found()}")
            path.append(self.advance().text)
        for part in path:
            if part.startswith("_"):
                raise RuleSyntaxError(first.column, f"names may not start with '_' ({'.'.join(path)!r})")
        if path[0] == "attributes":
            if len(path) != 2:
                raise RuleSyntaxError(first.column, "expected attributes.<name>, e.g. attributes.plan")
        elif len(path) != 1 or path[0] not in self.fields:
            raise RuleSyntaxError(first.column, f"unknown name {'.'.join(path)!r}; expected one of "
                                  + ", ".join(self.fields) + " or attributes.<name>")
        return Name(tuple(path), first.column)

    def parse_call(self, name: _Token) -> Node:
        signature = self.functions.get(name.text)
        if signature is None:
            known = ", ".join(f"{f}()" for f in self.functions) or "none here"
            raise RuleSyntaxError(name.column, f"unknown function {name.text!r}; expected one of {known}")
        self.advance()
        args: list[Any] = []
        while self.token.text != ")" or self.token.kind == "string":
            atom = self.parse_atom()
            if not isinstance(atom, Literal):
                raise RuleSyntaxError(atom.column, f"{name.text}() takes literal arguments")
            args.append(atom)
            if self.token.text == ",":
                self.advance()
            elif self.token.text != ")":
                raise RuleSyntaxError(self.token.column, f"expected ',' or ')', found {self._found()}")
        self.advance()
        if len(args) != len(signature):
            raise RuleSyntaxError(name.column, f"{name.text}() takes {len(signature)} argument(s), "
                                  f"got {len(args)}")
        for atom, wanted in zip(args, signature, strict=True):
            if type(atom.value) is not wanted:
                raise RuleSyntaxError(atom.column, f"{name.text}() expects {_type_name(wanted)} here, "
                                      f"got {atom.value!r}")
            if isinstance(atom.value, int) and atom.value < 0:
                raise RuleSyntaxError(atom.column, f"{name.text}() expects a non-negative number")
        return Call(name.text, tuple(a.value for a in args), name.column)


def _type_name(kind: type) -> str:
    return {int: "a whole number", str: "a string", float: "a number"}.get(kind, kind.__name__)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse_rule(text: str, fields: tuple[str, ...], functions: Mapping[str, FunctionSignature]) -> Rule:
    """Parse ``text`` into a :class:`Rule`, or raise :class:`RuleSyntaxError` with the column."""
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(MAX_RULE_LENGTH, f"a rule may be at most {MAX_RULE_LENGTH} characters long")
    if not text.strip():
        raise RuleSyntaxError(1, "the rule is empty")
    return Rule(text, _Parser(text, fields, functions).parse())


# --- evaluation over columns ------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A vector of values with a mask of which are present (missing values compare false)."""

    values: np.ndarray
    present: np.ndarray


def column_from_values(values: list[Any]) -> Column:
    """Build a typed :class:`Column` from Python values (numbers, strings, booleans, None)."""
    present = np.array([v is not None for v in values], dtype=bool)
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool}:
        return Column(np.array([bool(v) for v in values], dtype=bool), present)
    if kinds <= {int, float}:
        return Column(np.array([float("nan") if v is None else float(v) for v in values]), present)
    return Column(np.array(["" if v is None else str(v) for v in values], dtype=object), present)


Resolver = Callable[[Name | Call], Column]


class RuleTypeError(ValueError):
    """A rule compares values of incompatible types (e.g. a text attribute with a number)."""

    def __init__(self, column: int, problem: str) -> None:
        self.column = column
        self.problem = problem
        super().__init__(f"column {column}: {problem}")


_COMPARE = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
            ">": np.greater, ">=": np.greater_equal}
_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}


def evaluate(rule: Rule, size: int, resolve: Resolver) -> np.ndarray:
    """Evaluate ``rule`` over ``size`` rows; ``resolve`` supplies a :class:`Column` per name or call.

    Returns a boolean mask. A missing value makes its comparison false (and ``not`` of it true).
    """
    result = _evaluate(rule.root, size, resolve)
    if result.values.dtype != bool:
        raise RuleTypeError(1, "the rule must be a condition (a comparison, 'in', 'and', 'or' ...)")
    return np.asarray(result.values & result.present, dtype=bool)


def _evaluate(node: Node, size: int, resolve: Resolver) -> Column:
    if isinstance(node, Literal):
        value = node.value
        dtype: Any = bool if isinstance(value, bool) else (float if isinstance(value, int | float) else object)
        return Column(np.full(size, value, dtype=dtype), np.ones(size, dtype=bool))
    if isinstance(node, Name | Call):
        return resolve(node)
    if isinstance(node, Unary):
        operand = _evaluate(node.operand, size, resolve)
        if node.op == "not":
            _require(operand, bool, node.column, "'not' applies to a condition")
            return Column(~(operand.values & operand.present), np.ones(size, dtype=bool))
        _require(operand, float, node.column, "'-' applies to a number")
        return Column(-operand.values, operand.present)
    if isinstance(node, Membership):
        operand = _evaluate(node.operand, size, resolve)
        options = list(node.options)
        hits = np.isin(operand.values, np.array(options, dtype=operand.values.dtype
                                               if operand.values.dtype != object else object))
        hits &= operand.present
        return Column(~hits if node.negated else hits, np.ones(size, dtype=bool))
    left = _evaluate(node.left, size, resolve)
    right = _evaluate(node.right, size, resolve)
    if node.op in ("and", "or"):
        _require(left, bool, node.column, f"'{node.op}' joins conditions")
        _require(right, bool, node.column, f"'{node.op}' joins conditions")
        a, b = left.values & left.present, right.values & right.present
        return Column(a & b if node.op == "and" else a | b, np.ones(size, dtype=bool))
    if node.op in _ARITHMETIC:
        _require(left, float, node.column, f"'{node.op}' applies to numbers")
        _require(right, float, node.column, f"'{node.op}' applies to numbers")
        with np.errstate(divide="ignore", invalid="ignore"):
            values = _ARITHMETIC[node.op](left.values, right.values)
        return Column(values, left.present & right.present & np.isfinite(values))
    if _kind(left) != _kind(right):
        raise RuleTypeError(node.column, f"cannot compare {_kind(left)} with {_kind(right)} using {node.op!r}")
    values = _COMPARE[node.op](left.values, right.values)
    return Column(np.asarray(values, dtype=bool), left.present & right.present)


def _kind(column: Column) -> str:
    if column.values.dtype == bool:
        return "true/false"
    return "a number" if column.values.dtype.kind in "fiu" else "text"


def _require(column: Column, kind: type, position: int, problem: str) -> None:
    names: dict[type, str] = {bool: "true/false", float: "a number"}
    wanted = names[kind]
    if _kind(column) != wanted:
        raise RuleTypeError(position, f"{problem}, got {_kind(column)}")
