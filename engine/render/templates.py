"""Templates in the sandbox: a variant's subject, preheader, HTML and text for one recipient.

A variant's ``template = "digest"`` names ``templates/digest.html`` and/or
``templates/digest.txt``; its ``subject`` and ``preheader`` are templates written in the campaign
file. Layouts, partials and macros live beside them (``layouts/``, ``partials/``, ``macros/``).
HTML is autoescaped, undefined names fail (StrictUndefined) and the sandbox refuses Python
internals (:mod:`engine.render.sandbox`). Every failure is a :class:`RenderError` naming the
file (the template, or the campaign file for a subject) and the line.

Each variant compiles once (:meth:`TemplateSet.compile`); its CSS is inlined at that moment when
it does not depend on the recipient (:mod:`engine.render.inline`), and per message otherwise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from engine.errors import RenderError
from engine.render.inline import (
    INLINED_PREFIX,
    InlinePlan,
    NotInlinable,
    inline_fragment,
    inline_rendered,
    plan_inlining,
)
from engine.render.sandbox import sandbox
from engine.spec.model import CampaignSpec, Variant

GMAIL_CLIP_BYTES = 102 * 1024
log = logging.getLogger("kairos.render")


@dataclass(frozen=True)
class RenderedEmail:
    """The parts of one message, before tracking and MIME. ``warnings`` are worth telling a developer."""

    subject: str
    preheader: str
    text: str
    html: str | None
    warnings: tuple[str, ...] = ()


def html_to_text(html: str) -> str:
    """A readable text part from HTML, for variants that only have an HTML template."""
    text = re.sub(r"(?is)<(script|style|head).*?</\1>", "", html)
    text = re.sub(r"(?is)<div[^>]*display:\s*none[^>]*>.*?</div>", "", text)
    text = re.sub(r"(?is)<a\s[^>]*href=\"([^\"]+)\"[^>]*>(.*?)</a>", r"\2 (\1)", text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</h\d>|</li>|</tr>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[ \t]+", " ", unescape(text))
    return re.sub(r"\n\s*\n+", "\n\n", text).strip() + "\n"


class TemplateSet:
    """The templates directory, compiled per variant and cached.

    :param templates: the templates directory (``[paths] templates``).
    """

    def __init__(self, templates: Path) -> None:
        self.templates = templates
        self._files = jinja2.FileSystemLoader(str(templates))
        self._fragment_css: dict[str, str] = {}
        self.html = sandbox(jinja2.FunctionLoader(self._load_html), autoescape=True)
        self.text = sandbox(self._files, autoescape=False)
        self._compiled: dict[tuple[str, str], CompiledVariant] = {}

    def _load_html(self, name: str) -> tuple[str, str | None, Callable[[], bool] | None] | None:
        if name.startswith(INLINED_PREFIX):
            digest, _, real = name[len(INLINED_PREFIX):].partition("/")
            source, filename, uptodate = self._files.get_source(self.html, real)
            return inline_fragment(source, self._fragment_css.get(digest, "")), filename, uptodate
        return self._files.get_source(self.html, name)

    def _source(self, name: str) -> str:
        return self._files.get_source(self.html, name)[0]

    def compile(self, spec: CampaignSpec, variant: Variant) -> CompiledVariant:
        """The compiled templates of ``variant`` (cached per campaign file and variant)."""
        key = (str(spec.source), variant.name)
        if key not in self._compiled:
            self._compiled[key] = CompiledVariant(self, spec, variant)
        return self._compiled[key]

    def file_template(self, environment: jinja2.Environment, name: str) -> jinja2.Template | None:
        """The template ``name`` in ``environment``, None if there is no such file."""
        if not (self.templates / name).is_file():
            return None
        try:
            return environment.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(exc.filename or self.templates / name, None, exc.message or "syntax error",
                              line=exc.lineno) from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(self.templates / name, None, f"template {exc.name!r} not found") from None

    def inline_plan(self, name: str) -> tuple[InlinePlan, jinja2.Template | None]:
        """Plan CSS inlining for ``name`` and compile the inlined source when there is one."""
        def source_of(template: str) -> str:
            try:
                return self._source(template)
            except jinja2.TemplateNotFound:
                raise NotInlinable(f"template {template!r} not found") from None

        plan = plan_inlining(name, source_of)
        if plan.source is None:
            return plan, None
        self._fragment_css[plan.digest] = plan.css
        try:
            return plan, self.html.from_string(plan.source)
        except jinja2.TemplateSyntaxError as exc:
            return InlinePlan(None, f"the inlined source did not compile ({exc.message})"), None


@dataclass(frozen=True)
class _Where:
    """Where a template's errors point: a file, the field in it, and a line to fall back on."""

    path: Path | str
    field: str | None = None
    line: int | None = None


class CompiledVariant:
    """One variant, compiled: render it for a recipient with :meth:`render`."""

    def __init__(self, templates: TemplateSet, spec: CampaignSpec, variant: Variant) -> None:
        self.variant = variant
        index = spec.variants.index(variant)
        self._subject_where = _Where(spec.source, f"variants[{index}].subject",
                                     spec.line_of(f"variants[{index}].subject"))
        self._preheader_where = _Where(spec.source, f"variants[{index}].preheader",
                                       spec.line_of(f"variants[{index}].preheader"))
        self.subject = self._inline_template(templates, variant.subject, self._subject_where)
        self.preheader = self._inline_template(templates, variant.preheader, self._preheader_where) \
            if variant.preheader else None
        html_name, text_name = f"{variant.template}.html", f"{variant.template}.txt"
        self.html_where = _Where(templates.templates / html_name)
        self.text_where = _Where(templates.templates / text_name)
        self.html = templates.file_template(templates.html, html_name)
        self.text = templates.file_template(templates.text, text_name)
        self.plan, self.fast_html = (templates.inline_plan(html_name) if self.html
                                     else (InlinePlan(None, "no HTML"), None))
        self.css_note = ("inlined once, at compile time" if self.fast_html
                         else f"inlined per message: {self.plan.reason}")
        self._verified = False

    @staticmethod
    def _inline_template(templates: TemplateSet, source: str, where: _Where) -> jinja2.Template:
        try:
            return templates.text.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(where.path, where.field, exc.message or "syntax error", line=where.line) from None

    def render(self, context: dict[str, Any]) -> RenderedEmail:
        """Render subject, preheader, HTML and text for one recipient's ``context``.

        The bodies see ``message.subject`` and ``message.preheader`` besides what the caller put
        in ``context`` (``recipient``, ``items``, ``campaign``, ``message.unsubscribe_url``).
        """
        subject = " ".join(render_template(self.subject, context, self._subject_where).split())
        preheader = " ".join(render_template(self.preheader, context, self._preheader_where).split()) \
            if self.preheader else ""
        context = {**context, "message": {**context.get("message", {}), "subject": subject, "preheader": preheader}}
        html = self._render_html(context) if self.html is not None else None
        text = render_template(self.text, context, self.text_where) if self.text is not None else None
        warnings = []
        if html is not None and len(html.encode()) > GMAIL_CLIP_BYTES:
            warnings.append(f"{self.html_where.path}: the HTML is {len(html.encode()) // 1024} KB; Gmail clips "
                            f"messages over {GMAIL_CLIP_BYTES // 1024} KB behind a 'View entire message' link")
        return RenderedEmail(subject=subject, preheader=preheader, text=text if text is not None else
                             html_to_text(html or ""), html=html, warnings=tuple(warnings))

    def _render_html(self, context: dict[str, Any]) -> str:
        assert self.html is not None
        if self.fast_html is None:
            html = render_template(self.html, context, self.html_where)
            return inline_rendered(html) if self.plan.css or "<style" in html else html
        try:
            html = self.fast_html.render(context)
        except Exception:
            # The inlined source has other line numbers: render the original for the real place.
            render_template(self.html, context, self.html_where)
            raise
        if not self._verified:
            self._verified = True
            reference = inline_rendered(render_template(self.html, context, self.html_where))
            if _styles(reference) != _styles(html):
                self.fast_html = None
                self.css_note = ("inlined per message: inlining the template once gave other styles than inlining "
                                 "a rendered message (a selector spans a macro, or HTML comes from data)")
                log.warning("%s: CSS %s", self.html_where.path, self.css_note)
                return reference
        return html


_TAG = re.compile(r"<([a-zA-Z][\w-]*)([^>]*)>")
_STYLE_ATTR = re.compile(r"""\sstyle\s*=\s*("([^"]*)"|'([^']*)')""")


def _styles(html: str) -> list[tuple[str, frozenset[str]]]:
    """Each element's tag and inline declarations, in document order, to compare two inlinings."""
    found = []
    for tag in _TAG.finditer(html):
        style = _STYLE_ATTR.search(tag.group(2))
        text = unescape(style.group(2) or style.group(3) or "") if style else ""
        found.append((tag.group(1).lower(),
                      frozenset(" ".join(d.split()) for d in text.split(";") if d.strip())))
    return found


def render_template(template: jinja2.Template, context: dict[str, Any], where: _Where) -> str:
    """Render ``template``; every failure becomes a RenderError at the template's file and line."""
    try:
        return template.render(context)
    except SecurityError as exc:
        path, line = _template_place(exc, where)
        raise RenderError(path, where.field, str(exc), line=line) from None
    except jinja2.UndefinedError as exc:
        path, line = _template_place(exc, where)
        raise RenderError(path, where.field, f"undefined value: {exc.message}", line=line) from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(exc.filename or where.path, where.field, exc.message or "syntax error",
                          line=exc.lineno) from None
    except jinja2.TemplateNotFound as exc:
        path, line = _template_place(exc, where)
        raise RenderError(path, where.field, f"template {exc.name!r} not found", line=line) from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        path, line = _template_place(exc, where)
        raise RenderError(path, where.field, f"{type(exc).__name__}: {exc}", line=line) from None


def _template_place(exc: BaseException, where: _Where) -> tuple[Path | str, int | None]:
    """The innermost template file and line of a render-time error, from the traceback Jinja rewrites."""
    path, line = where.path, where.line
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == "<template>":
            line = tb.tb_lineno + (where.line - 1 if where.line else 0) if where.field else tb.tb_lineno
            path = where.path
        elif filename.endswith((".html", ".txt")):
            path, line = filename, tb.tb_lineno
        tb = tb.tb_next
    return path, line
