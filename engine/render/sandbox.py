"""The Jinja sandbox templates run in, stricter than Jinja's own.

Templates are written by people who should not be able to run Python on the sending machines.
Jinja's ``SandboxedEnvironment`` already hides ``_private`` attributes, but it answers an unsafe
lookup with an *undefined* value that a template can still test (``x.__class__ is defined``). Here:

- before a template is compiled, its tokens are scanned: a name or attribute starting with ``_``
  (``__class__``, ``__mro__``, ``__subclasses__``, ``__globals__``, ``__builtins__`` ...), the
  attributes of frames, code and generators, ``attr('_...')`` or ``x['_...']`` lookups and any
  ``'__...'`` string refuse the template with its line, so it never executes;
- at render time, any lookup that reaches into a module, a class, a function or another Python
  internal, or that would mutate data (the immutable sandbox), raises at once instead of
  yielding an undefined value.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, MutableMapping
from typing import Any

import jinja2
from jinja2.environment import TemplateModule
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import Context, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Attributes of frames, code objects, generators and old-style methods: never data.
INTERNAL_ATTRIBUTES = frozenset({
    "mro", "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next",
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
    "co_code", "func_globals", "func_code", "func_closure", "im_func", "im_self", "im_class",
})
# Objects whose attributes a template has no business reading.
_INTERNAL_TYPES: tuple[type, ...] = (
    types.ModuleType, type, types.FunctionType, types.MethodType, types.BuiltinFunctionType,
    types.CodeType, types.FrameType, types.TracebackType, types.GeneratorType, types.CoroutineType,
    types.AsyncGeneratorType, types.MappingProxyType, types.CellType,
)


class SandboxViolation(jinja2.TemplateSyntaxError):
    """A template refused before it runs, because it reaches for Python internals."""


class RefuseInternals(Extension):
    """Scans each template's token stream and refuses reaches for Python internals."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        previous: list[Token] = []
        for token in stream:
            self._check(token, previous, stream)
            previous = [*previous[-2:], token]
            yield token

    @staticmethod
    def _check(token: Token, previous: list[Token], stream: TokenStream) -> None:
        value = token.value
        if token.type == "name" and isinstance(value, str):
            after_dot = bool(previous) and previous[-1].type == "dot"
            if value.startswith("_") or (after_dot and value in INTERNAL_ATTRIBUTES):
                raise SandboxViolation(f"refused by the sandbox: {value!r} reaches into Python internals",
                                       token.lineno, stream.name, stream.filename)
        if token.type == "string" and isinstance(value, str) and value.startswith("_"):
            subscript = bool(previous) and previous[-1].type == "lbracket"
            attr_filter = len(previous) >= 2 and previous[-1].type == "lparen" and previous[-2].value == "attr"
            if subscript or attr_filter or value.startswith("__"):  # map(attribute='__class__') and the like
                raise SandboxViolation(f"refused by the sandbox: {value!r} reaches into Python internals",
                                       token.lineno, stream.name, stream.filename)


_DICT_ATTRIBUTES = frozenset(dir(dict))


class StrictSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, refusing (not hiding) every unsafe lookup."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Template data is plain dicts, and ``item.title`` on one ends in ``item["title"]`` after
        # a failed attribute lookup: go there directly when no dict attribute has that name
        # (the result is the same, without raising and catching an AttributeError each time).
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        # ``ui.item_card`` on an imported template: what it exported (its macros and variables)
        # is data the templates wrote; the module's own attributes all start with "_".
        elif type(obj) is TemplateModule and not attribute.startswith("_"):
            try:
                return obj.__dict__[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # A macro the templates defined is safe to call: skip the generic callable checks.
        if type(__obj) is Macro:
            return __context.call(__obj, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # A template's globals as one dict rather than Jinja's ChainMap over the environment's:
        # every render copies them into its context, and iterating a ChainMap runs in Python.
        # Nothing adds environment globals after templates are loaded.
        return {**self.globals, **(d or {})}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value) or attr in INTERNAL_ATTRIBUTES:
            return False
        return not isinstance(obj, _INTERNAL_TYPES) and not isinstance(value, types.ModuleType | type)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"refused by the sandbox: attribute {attribute!r} of a {type(obj).__name__!r} "
                            "object (Python internals, or a method that would change the data)")


def sandbox(loader: jinja2.BaseLoader, *, autoescape: bool) -> StrictSandbox:
    """A template environment: strict sandbox, StrictUndefined, internals refused before compiling."""
    return StrictSandbox(
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        extensions=[RefuseInternals],
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=-1,  # a plain dict: every render looks its extended and imported templates up
    )
