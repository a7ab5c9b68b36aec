"""The syntax of the rule language: tokens, a recursive-descent parser and the frozen tree.

No Python ``eval`` anywhere: a rule is tokenized and parsed by hand into the small tree below.
What names and functions mean (their types, their arguments) is checked afterwards by
:mod:`engine.spec.rules`; this module only knows the grammar and the limits that keep hostile
input cheap to refuse.

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
    args       := [literal ("," literal)*]
    list       := "[" [literal ("," literal)*] "]"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_RULE_LENGTH = 4000
MAX_DEPTH = 60          # parentheses, 'not' and unary '-' nested inside each other
MAX_TREE_DEPTH = 200    # operators chained one after another (a or b or c ...)


class RuleSyntaxError(ValueError):
    """A rule does not parse or does not type-check; ``column`` is 1-based within the rule text."""

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
    arg_columns: tuple[int, ...] = ()


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


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Membership):
        return (node.operand,)
    return ()


def walk(node: Node, visit: Callable[[Node], None]) -> None:
    """Visit every node, iteratively (a long chain never exhausts the Python stack)."""
    stack = [node]
    while stack:
        current = stack.pop()
        visit(current)
        stack.extend(reversed(children(current)))


def tree_depth(node: Node) -> int:
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children(current))
    return deepest


# --- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|\.)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_PYTHON_HINTS = {"&&": "and", "||": "or", "!": "not", "=": "=="}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    column: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            char = text[position]
            if char in "'\"":
                raise RuleSyntaxError(position + 1, "unterminated string: expected a closing " + repr(char))
            two = text[position:position + 2]
            hint = _PYTHON_HINTS.get(two) or _PYTHON_HINTS.get(char)
            problem = f"unexpected character {char!r}"
            raise RuleSyntaxError(position + 1, f"{problem}; write {hint!r}" if hint else problem)
        kind = match.lastgroup or ""
        if kind != "space":
            word = match.group()
            if kind == "name" and word in _KEYWORDS:
                kind = word
            tokens.append(Token(kind, word, position + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


# --- the parser -------------------------------------------------------------------------------

class Parser:
    """Parses one rule. ``is_function`` says whether a name followed by '(' may be called."""

    def __init__(self, text: str, is_function: Callable[[str], bool], known_functions: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.is_function = is_function
        self.known_functions = known_functions

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def at(self, text: str) -> bool:
        return self.token.kind == "op" and self.token.text == text

    def found(self) -> str:
        return "the end of the rule" if self.token.kind == "end" else repr(self.token.text)

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleSyntaxError(self.token.column, f"nested more than {MAX_DEPTH} levels deep")

    def parse(self) -> Node:
        node = self.parse_or()
        if self.token.kind != "end":
            if self.at(")"):
                raise RuleSyntaxError(self.token.column, "unbalanced ')': no '(' to close")
            raise RuleSyntaxError(self.token.column, f"expected 'and', 'or' or the end, found {self.found()}")
        if tree_depth(node) > MAX_TREE_DEPTH:
            raise RuleSyntaxError(1, f"more than {MAX_TREE_DEPTH} operators chained in one rule; "
                                  "use 'in [...]' for long lists of values")
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
        if self.at("-"):
            column = self.advance().column
            self.nested()
            operand = self.parse_unary()
            self.depth -= 1
            if isinstance(operand, Literal) and isinstance(operand.value, int | float) \
                    and not isinstance(operand.value, bool):
                return Literal(-operand.value, column)
            return Unary("-", operand, column)
        return self.parse_atom()

    def parse_literals(self, close: str, what: str) -> list[Literal]:
        """Comma-separated literals up to ``close`` (the opening bracket is already consumed)."""
        values: list[Literal] = []
        while not self.at(close):
            if self.token.kind == "end":
                raise RuleSyntaxError(self.token.column, f"expected {close!r} to close {what}, found {self.found()}")
            atom = self.parse_unary()
            if not isinstance(atom, Literal):
                hint = f"; did you mean '{atom.dotted}' in quotes?" if isinstance(atom, Name) else ""
                raise RuleSyntaxError(atom.column, f"{what} may hold only numbers, 'strings', true or false{hint}")
            values.append(atom)
            if self.at(","):
                self.advance()
            elif not self.at(close):
                raise RuleSyntaxError(self.token.column, f"expected ',' or {close!r}, found {self.found()}")
        self.advance()
        return values

    def parse_list(self) -> tuple[Any, ...]:
        if not self.at("["):
            raise RuleSyntaxError(self.token.column, f"expected '[' to start a list, found {self.found()}")
        opened = self.advance()
        values = self.parse_literals("]", f"the list at column {opened.column}")
        kinds = {_literal_kind(v.value) for v in values}
        if len(kinds) > 1:
            raise RuleSyntaxError(opened.column, "a list holds values of one kind (all numbers, all 'strings' "
                                  "or all true/false)")
        return tuple(v.value for v in values)

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
        if self.at("("):
            self.advance()
            self.nested()
            node = self.parse_or()
            self.depth -= 1
            if not self.at(")"):
                raise RuleSyntaxError(self.token.column,
                                      f"unbalanced '(' at column {token.column}: expected ')', found {self.found()}")
            self.advance()
            return node
        if token.kind == "name":
            return self.parse_name()
        raise RuleSyntaxError(token.column, f"expected a value, a name or '(', found {self.found()}")

    def parse_name(self) -> Node:
        first = self.advance()
        path = [first.text]
        while self.at("."):
            self.advance()
            if self.token.kind != "name":
                raise RuleSyntaxError(self.token.column, f"expected a name after '.', found {self.found()}")
            path.append(self.advance().text)
        dotted = ".".join(path)
        if any(part.startswith("_") for part in path):
            raise RuleSyntaxError(first.column, f"names may not start with '_' ({dotted!r})")
        if self.at("("):
            if len(path) != 1 or not self.is_function(first.text):
                raise RuleSyntaxError(first.column, f"unknown function {dotted!r}; expected one of "
                                      f"{self.known_functions}")
            opened = self.advance()
            args = self.parse_literals(")", f"the arguments of {first.text}() at column {opened.column}")
            return Call(first.text, tuple(a.value for a in args), first.column, tuple(a.column for a in args))
        return Name(tuple(path), first.column)


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return "text" if isinstance(value, str) else "a number"
