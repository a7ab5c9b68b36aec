"""CSS inlining once per compiled template, not once per message.

Mail clients ignore most ``<style>`` rules, so every element needs its styles in a ``style``
attribute. css-inline does that in ~100 µs a document — a tenth of a message's budget — so when
the CSS cannot depend on the recipient, it runs once, on the template's *source*:

1. flatten the variant's template: ``{% extends %}`` resolved by putting the child's blocks into
   the parent, ``{% include %}`` of a literal name replaced by the included source;
2. protect the Jinja syntax: statements and expressions between elements become HTML comments
   (which an HTML parser leaves where they are, even between table rows), expressions inside
   quoted attribute values or ``<title>`` become private-use placeholders;
3. inline with css-inline (``@media`` rules stay in a ``<style>`` for clients that read them);
4. restore the Jinja syntax and compile the result. Imported macro files are inlined the same
   way, as fragments, with the variant's CSS.

The CSS depends on the recipient — and inlining falls back to once per message — when a
``<style>`` holds template syntax, when template syntax sits in a tag outside a quoted value or
in a ``class``, ``id`` or ``style`` attribute, when a selector depends on the rendered structure
(``:nth-child``, ``:first-child``, ``+``, ``~`` ...), or when the template cannot be flattened
(``super()``, a computed template name). :class:`InlinePlan` says which, and why.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import css_inline

_JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)
_STATEMENT = re.compile(r"^\{%[-+]?\s*(\w+)(.*?)[-+]?%\}$", re.S)
_LITERAL = re.compile(r"""^\s*(["'])([^"']+)\1\s*(with\s+context\s*)?$""")
_IMPORT = re.compile(r"""(\{%[-+]?\s*(?:import|from)\s+)(["'])([^"']+)\2""")
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.S | re.I)
_STRUCTURAL = re.compile(r":(?:nth-|first-|last-|only-|empty)|[+~]")
_RAW_TEXT = ("style", "script", "title", "textarea")
_PLACEHOLDER = re.compile("<!--\ue000(\\d+)\ue001-->|\ue000(\\d+)\ue001")
MAX_DEPTH = 12
INLINED_PREFIX = "@inlined/"

SourceOf = Callable[[str], str]


class NotInlinable(Exception):
    """The CSS of this template may depend on the recipient; the message says why."""


@dataclass(frozen=True)
class InlinePlan:
    """How a template's CSS is inlined: ``source`` is the inlined Jinja source, or None with the
    ``reason`` inlining happens per message instead."""

    source: str | None
    reason: str = ""
    css: str = ""
    digest: str = ""
    imports: tuple[str, ...] = field(default=())


def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def inline_rendered(html: str) -> str:
    """Inline the CSS of one rendered message (the per-message fallback)."""
    return str(_inliner().inline(html))


def _blocks(source: str) -> list[tuple[str, int, int, int, int]]:
    """Every ``{% block %}``: (name, tag start, body start, body end, tag end), outermost first."""
    found: list[tuple[str, int, int, int, int]] = []
    stack: list[tuple[str, int, int]] = []
    for match in _JINJA.finditer(source):
        statement = _STATEMENT.match(match.group())
        if statement is None:
            continue
        keyword, rest = statement.group(1), statement.group(2).split()
        if keyword == "block" and rest:
            stack.append((rest[0], match.start(), match.end()))
        elif keyword == "endblock" and stack:
            name, start, body = stack.pop()
            found.append((name, start, body, match.start(), match.end()))
    return sorted(found, key=lambda block: block[1])


def _replace_blocks(parent: str, overrides: dict[str, str]) -> str:
    """Put the child's block bodies into the parent's blocks (outermost overrides win)."""
    out: list[str] = []
    position = 0
    for name, start, body, end, _tag_end in _blocks(parent):
        if start < position or name not in overrides:
            continue
        out.append(parent[position:body])
        out.append(_replace_blocks(overrides[name], overrides))
        position = end
    out.append(parent[position:])
    return "".join(out)


def flatten(name: str, source_of: SourceOf, depth: int = 0) -> str:
    """The source of ``name`` with extends and literal includes resolved into one text."""
    if depth > MAX_DEPTH:
        raise NotInlinable(f"templates nest deeper than {MAX_DEPTH} levels")
    source = source_of(name)
    if "super()" in source:
        raise NotInlinable(f"{name} calls super()")
    parent: str | None = None
    prelude: list[str] = []
    for match in _JINJA.finditer(source):
        statement = _STATEMENT.match(match.group())
        if statement is not None and statement.group(1) == "extends":
            literal = _LITERAL.match(statement.group(2))
            if literal is None:
                raise NotInlinable(f"{name} extends a computed template name")
            parent = literal.group(2)
            break
    if parent is not None:
        blocks = _blocks(source)
        overrides = {block[0]: source[block[2]:block[3]] for block in blocks}
        outside = source
        for _name, start, _body, _end, tag_end in reversed([b for b in blocks if not _inside_other(b, blocks)]):
            outside = outside[:start] + outside[tag_end:]
        for match in _JINJA.finditer(outside):
            statement = _STATEMENT.match(match.group())
            if statement is None or statement.group(1) == "extends":
                continue
            if statement.group(1) in ("import", "from", "set"):
                prelude.append(match.group())
            else:
                raise NotInlinable(f"{name} has a {{% {statement.group(1)} %}} outside its blocks")
        source = _replace_blocks(flatten(parent, source_of, depth + 1), overrides)
    return "".join(prelude) + _resolve_includes(name, source, source_of, depth)


def _inside_other(block: tuple[str, int, int, int, int], blocks: list[tuple[str, int, int, int, int]]) -> bool:
    return any(other[1] < block[1] and block[4] <= other[4] for other in blocks)


def _resolve_includes(name: str, source: str, source_of: SourceOf, depth: int) -> str:
    def include(match: re.Match[str]) -> str:
        statement = _STATEMENT.match(match.group())
        if statement is None or statement.group(1) != "include":
            return match.group()
        literal = _LITERAL.match(statement.group(2))
        if literal is None:
            raise NotInlinable(f"{name} includes a computed name or uses 'ignore missing'/'without context'")
        return flatten(literal.group(2), source_of, depth + 1)

    return _JINJA.sub(include, source)


def _protect(source: str) -> tuple[str, list[str]]:
    """Replace Jinja syntax by placeholders an HTML parser keeps in place; see the module doc."""
    originals: list[str] = []
    out: list[str] = []
    state = _HtmlState()
    position = 0
    for match in _JINJA.finditer(source):
        state.feed(source[position:match.start()])
        originals.append(match.group())
        index = len(originals) - 1
        if state.in_tag and not state.quote:
            raise NotInlinable("template syntax inside a tag, outside a quoted attribute value")
        if state.quote and state.attribute in ("class", "id", "style"):
            raise NotInlinable(f"template syntax in a {state.attribute!r} attribute")
        if state.raw == "style":
            raise NotInlinable("template syntax inside <style>")
        plain = state.quote or state.raw or state.comment
        out.append(source[position:match.start()])
        out.append(f"\ue000{index}\ue001" if plain else f"<!--\ue000{index}\ue001-->")
        position = match.end()
    out.append(source[position:])
    return "".join(out), originals


def _restore(inlined: str, originals: list[str]) -> str:
    seen: list[int] = []

    def back(match: re.Match[str]) -> str:
        index = int(match.group(1) or match.group(2))
        seen.append(index)
        return originals[index]

    restored = _PLACEHOLDER.sub(back, inlined)
    if sorted(seen) != list(range(len(originals))):
        raise NotInlinable("the HTML parser moved template syntax")
    return restored


class _HtmlState:
    """Just enough of HTML's tokenizer to know where a piece of template syntax stands."""

    def __init__(self) -> None:
        self.in_tag = False
        self.tag = ""
        self.closing = False
        self.quote = ""
        self.attribute = ""
        self.raw = ""
        self.comment = False
        self._word = ""

    def feed(self, text: str) -> None:
        index = 0
        while index < len(text):
            char = text[index]
            if self.comment:
                end = text.find("-->", index)
                if end < 0:
                    return
                self.comment, index = False, end + 3
                continue
            if self.raw:
                end = text.lower().find(f"</{self.raw}", index)
                if end < 0:
                    return
                self.raw, index = "", end
                continue
            if not self.in_tag:
                if text.startswith("<!--", index):
                    self.comment, index = True, index + 4
                    continue
                if char == "<" and index + 1 < len(text) and (text[index + 1].isalpha() or text[index + 1] == "/"):
                    self.in_tag, self.tag, self._word, self.attribute = True, "", "", ""
                    self.closing = text[index + 1] == "/"
                index += 1
                continue
            self._in_tag(char)
            index += 1

    def _in_tag(self, char: str) -> None:
        if self.quote:
            if char == self.quote:
                self.quote = ""
            return
        if char in "\"'":
            self.quote = char
        elif char == ">":
            self.in_tag = False
            self._end_word()
            if not self.closing and self.tag in _RAW_TEXT:
                self.raw = self.tag
        elif char == "=":
            self.attribute = self._word.lower() or self.attribute
            self._word = ""
        elif char.isspace() or char == "/":
            self._end_word()
        else:
            self._word += char

    def _end_word(self) -> None:
        if self._word and not self.tag:
            self.tag = self._word.lower().lstrip("/")
        elif self._word:
            self.attribute = self._word.lower()
        self._word = ""


def _stylesheet(source: str) -> str:
    css = "\n".join(_STYLE.findall(source))
    if _JINJA.search(css):
        raise NotInlinable("template syntax inside <style>")
    selectors = " ".join(re.findall(r"([^{}]+)\{", re.sub(r"/\*.*?\*/", "", css, flags=re.S)))
    if _STRUCTURAL.search(selectors):
        raise NotInlinable("a selector depends on the rendered structure (:nth-*, :first-*, :last-*, +, ~)")
    return css


def plan_inlining(name: str, source_of: SourceOf) -> InlinePlan:
    """Inline the CSS of template ``name`` once, or say why it must be inlined per message."""
    try:
        flat = flatten(name, source_of)
        css = _stylesheet(flat)
        if not css.strip():
            return InlinePlan(None, "no <style> to inline")
        protected, originals = _protect(flat)
        inlined = _restore(_inliner().inline(protected), originals)
    except NotInlinable as exc:
        return InlinePlan(None, str(exc))
    digest = hashlib.sha256(css.encode()).hexdigest()[:12]
    imports: list[str] = []

    def redirect(match: re.Match[str]) -> str:
        imports.append(match.group(3))
        return f"{match.group(1)}{match.group(2)}{INLINED_PREFIX}{digest}/{match.group(3)}{match.group(2)}"

    inlined = _IMPORT.sub(redirect, inlined)
    return InlinePlan(inlined, css=css, digest=digest, imports=tuple(imports))


def inline_fragment(source: str, css: str) -> str:
    """A macro file's source with ``css`` inlined into its elements (unchanged if it cannot be)."""
    try:
        protected, originals = _protect(source)
        return _restore(_inliner().inline_fragment(protected, css), originals)
    except NotInlinable:
        return source
