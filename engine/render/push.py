"""Push notifications from a variant: title, body and link, rendered in Jinja's sandbox.

A variant's ``push_title`` (default: its ``subject``), ``push_body`` and ``push_url`` (default:
the first item's link) are short templates seeing the same context as the email templates
(``recipient``, ``items``, ``campaign``). Notifications are plain text: whitespace is collapsed,
and the body is cut at :data:`MAX_BODY` characters, well inside every provider's 4 KB payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from engine.errors import RenderError
from engine.render.sandbox import sandbox
from engine.spec.model import Variant

MAX_TITLE = 120
MAX_BODY = 1000


@dataclass(frozen=True)
class RenderedPush:
    title: str
    body: str
    url: str | None


class PushTemplates:
    """Compiles each variant's push templates once and renders them per recipient."""

    def __init__(self) -> None:
        # the same strict sandbox as email templates: internals refused before compiling
        self.environment = sandbox(jinja2.BaseLoader(), autoescape=False)
        self._compiled: dict[str, jinja2.Template] = {}

    def _template(self, source: str, field: str) -> jinja2.Template:
        if source not in self._compiled:
            try:
                self._compiled[source] = self.environment.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(None, field, f"template syntax: {exc.message}", line=exc.lineno) from None
        return self._compiled[source]

    def _render(self, source: str, field: str, context: dict[str, Any]) -> str:
        try:
            return " ".join(self._template(source, field).render(context).split())
        except SecurityError as exc:
            raise RenderError(None, field, f"refused by the sandbox: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(None, field, f"undefined value: {exc.message}") from None
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            raise RenderError(None, field, f"{type(exc).__name__}: {exc}") from None

    def render(self, variant: Variant, context: dict[str, Any]) -> RenderedPush:
        """The notification of ``variant`` for one recipient's ``context``."""
        where = f"variant {variant.name}"
        title = self._render(variant.push_title or variant.subject, f"{where} push_title", context)
        body = self._render(variant.push_body, f"{where} push_body", context) if variant.push_body else ""
        if variant.push_url:
            url: str | None = self._render(variant.push_url, f"{where} push_url", context) or None
        else:
            items = context.get("items") or []
            url = str(items[0]["url"]) if items else None
        if len(body) > MAX_BODY:
            body = body[:MAX_BODY - 1].rstrip() + "…"
        return RenderedPush(title=title[:MAX_TITLE], body=body, url=url)
