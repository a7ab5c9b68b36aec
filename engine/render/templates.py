"""Templates in Jinja's sandbox: subject, preheader, text and HTML of a variant for one recipient.

A variant's ``template = "digest"`` names ``templates/digest.html`` and/or
``templates/digest.txt``. HTML is autoescaped, undefined names fail loudly (StrictUndefined),
and the sandbox refuses access to Python internals: every such failure is a RenderError naming
the template and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import RenderError
from engine.spec.model import Variant


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    text: str
    html: str | None


def _environment(templates: Path, autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def html_to_text(html: str) -> str:
    """A readable text part from HTML, for variants that only have an HTML template."""
    text = re.sub(r"(?is)<(script|style|head).*?</\1>", "", html)
    text = re.sub(r"(?i)<a\s[^>]*href=\"([^\"]+)\"[^>]*>(.*?)</a>", r"\2 (\1)", text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</h\d>|</li>|</tr>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[ \t]+", " ", unescape(text))
    return re.sub(r"\n\s*\n+", "\n\n", text).strip() + "\n"


class TemplateSet:
    """Compiles each template once and renders variants for recipients.

    :param templates: the templates directory (``[paths] templates``).
    """

    def __init__(self, templates: Path) -> None:
        self.templates = templates
        self.html = _environment(templates, autoescape=True)
        self.text = _environment(templates, autoescape=False)
        self._inline: dict[str, jinja2.Template] = {}

    def _file(self, environment: SandboxedEnvironment, name: str) -> jinja2.Template | None:
        if not (self.templates / name).is_file():
            return None
        try:
            return environment.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(self.templates / (exc.name or name), None, f"template syntax: {exc.message}",
                              line=exc.lineno) from None

    def _string(self, source: str, field: str) -> jinja2.Template:
        key = f"{field}\x1f{source}"
        if key not in self._inline:
            try:
                self._inline[key] = self.text.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(None, field, f"template syntax: {exc.message}", line=exc.lineno) from None
        return self._inline[key]

    def render_email(self, variant: Variant, context: dict[str, Any]) -> RenderedEmail:
        """Render ``variant`` for one recipient's ``context``."""
        html_template = self._file(self.html, f"{variant.template}.html")
        text_template = self._file(self.text, f"{variant.template}.txt")
        html = self._render(html_template, context, f"{variant.template}.html") if html_template else None
        text = self._render(text_template, context, f"{variant.template}.txt") if text_template else None
        if text is None:
            text = html_to_text(html or "")
        subject = self._render(self._string(variant.subject, "subject"), context, f"variant {variant.name} subject")
        preheader = self._render(self._string(variant.preheader, "preheader"), context,
                                 f"variant {variant.name} preheader") if variant.preheader else ""
        return RenderedEmail(subject=" ".join(subject.split()), preheader=" ".join(preheader.split()),
                             text=text, html=html)

    def _render(self, template: jinja2.Template, context: dict[str, Any], name: str) -> str:
        try:
            return template.render(context)
        except SecurityError as exc:
            raise RenderError(name, None, f"refused by the sandbox: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(name, None, f"undefined value: {exc.message}", line=_template_line(exc)) from None
        except jinja2.TemplateError as exc:
            raise RenderError(name, None, f"{type(exc).__name__}: {exc}", line=_template_line(exc)) from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            raise RenderError(name, None, f"{type(exc).__name__}: {exc}", line=_template_line(exc)) from None


def _template_line(exc: BaseException) -> int | None:
    """The template line of a render-time error, from the traceback Jinja rewrites."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith((".html", ".txt", "<template>")):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
