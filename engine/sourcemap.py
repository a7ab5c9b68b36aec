"""Read a TOML or YAML document together with the line of every field in it.

Users are told ``campaigns/digest.toml:14: schedule.cron: ...``, so whatever reads a file keeps
a map from dotted field paths (``schedule.cron``, ``variants[1].subject``; list indexes are
0-based) to 1-based line numbers. YAML gives lines through its node tree; TOML (``tomllib``)
does not, so its lines are found by scanning table headers and ``key =`` lines.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import LocatedError

if TYPE_CHECKING:
    import yaml

_TOML_ERROR_AT = re.compile(r"\(at line (\d+), column (\d+)\)")
_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*=""")
_INLINE_KEY = re.compile(r"""[{,]\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")


@dataclass(frozen=True)
class Document:
    """A parsed document: its data, where it came from and the line of each field."""

    path: Path
    data: dict[str, Any]
    lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, dotted: str) -> int | None:
        """The line of ``dotted``, or of its nearest enclosing field that has one."""
        while dotted:
            if dotted in self.lines:
                return self.lines[dotted]
            shorter = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", dotted)
            if shorter == dotted:
                break
            dotted = shorter
        return None


def _split_key(key: str) -> list[str]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_\-]+)""", key)
    return [a or b or c for a, b, c in parts]


def _toml_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    table: str = ""
    array_counts: dict[str, int] = {}
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if raw.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _TABLE.match(raw)
        if header and not _KEY.match(raw):
            name = ".".join(_split_key(header.group(2)))
            if header.group(1) == "[[":
                index = array_counts.get(name, -1) + 1
                array_counts[name] = index
                table = f"{name}[{index}]"
            else:
                table = _indexed(name, array_counts)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if not key:
            continue
        dotted = ".".join(filter(None, [table, *_split_key(key.group(1))]))
        lines.setdefault(dotted, number)
        rest = raw[key.end():]
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2 == 1:
                in_multiline = quote
        for inline in _INLINE_KEY.finditer(rest):
            lines.setdefault(f"{dotted}.{_split_key(inline.group(1))[0]}", number)
    return lines


def _indexed(name: str, array_counts: dict[str, int]) -> str:
    """``variants.extra`` under the current ``[[variants]]`` becomes ``variants[1].extra``."""
    for array, index in sorted(array_counts.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(array + "."):
            return f"{array}[{index}]{name[len(array):]}"
    return name


def _yaml_lines(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            dotted = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines.setdefault(dotted, key_node.start_mark.line + 1)
            _yaml_lines(value_node, dotted, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            dotted = f"{prefix}[{index}]"
            lines.setdefault(dotted, item.start_mark.line + 1)
            _yaml_lines(item, dotted, lines)


def parse_document(path: Path, text: str, error: type[LocatedError]) -> Document:
    """Parse ``text`` as TOML or YAML (by ``path``'s suffix) into a :class:`Document`.

    :param error: the error class to raise, so a campaign file fails with ``SpecError`` and
        config.toml with ``ConfigError``.
    """
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            at = _TOML_ERROR_AT.search(str(exc))
            problem = _TOML_ERROR_AT.sub("", str(exc)).strip()
            raise error(path, None, f"not valid TOML: {problem}",
                        line=int(at.group(1)) if at else None) from None
        return Document(path, data, _toml_lines(text))
    if suffix in (".yaml", ".yml"):
        import yaml  # only for YAML files: a sixtieth of every command's start-up otherwise

        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise error(path, None, f"not valid YAML: {exc.problem or exc.context}",
                        line=mark.line + 1 if mark else None) from None
        except yaml.YAMLError as exc:
            raise error(path, None, f"not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise error(path, None, "expected a mapping of sections at the top level", line=1)
        lines: dict[str, int] = {}
        if node is not None:
            _yaml_lines(node, "", lines)
        return Document(path, data, lines)
    raise error(path, None, "expected a .toml, .yaml or .yml file")


def load_document(path: Path, error: type[LocatedError]) -> Document:
    """Read and parse ``path``; a missing or unreadable file is an ``error`` too."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(path, None, f"cannot read the file: {exc}") from None
    return parse_document(path, text, error)
