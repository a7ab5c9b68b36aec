"""Templates: errors name the file and line; CSS is inlined once per template when it can be."""

from __future__ import annotations

import pytest

from engine.errors import RenderError
from engine.render import inline
from engine.render.templates import GMAIL_CLIP_BYTES, _styles
from tests.render.conftest import TemplateProject, sample_context


def test_the_shipped_digest_renders_every_part(tp: TemplateProject) -> None:
    compiled = tp.compile(subject="{{ items[0].title }} and more",
                          preheader="For {{ recipient.attributes.first_name }}")
    rendered = compiled.render(sample_context())
    assert rendered.subject == "Story 0 & more and more"
    assert rendered.preheader == "For Ada"
    assert rendered.html is not None
    assert "Story 0 &amp; more" in rendered.html                  # autoescaped in HTML
    assert 'class="preheader"' in rendered.html and "For Ada" in rendered.html
    assert 'href="https://track.example.test/u/token"' in rendered.html
    assert "Story 0 & more" in rendered.text                      # not escaped in text
    assert rendered.text.index("Story 0") < rendered.text.index("Unsubscribe")
    assert "https://track.example.test/u/token" in rendered.text
    assert rendered.warnings == ()


def test_an_undefined_name_points_at_the_file_and_line(tp: TemplateProject) -> None:
    tp.template("broken.html", """
        {% extends "layouts/base.html" %}
        {% block body %}
        <p>fine</p>
        <p>{{ recipient.attributes.nickname }}</p>
        {% endblock %}
    """)
    with pytest.raises(RenderError) as caught:
        tp.compile(template="broken").render(sample_context())
    assert str(caught.value).startswith(f"{tp.templates / 'broken.html'}:4: undefined value: ")
    assert "nickname" in str(caught.value)


def test_a_syntax_error_points_at_the_file_and_line(tp: TemplateProject) -> None:
    tp.template("broken.txt", "one\ntwo\n{% for item in items %}\n{{ item.title }\n")
    with pytest.raises(RenderError) as caught:
        tp.compile(template="broken")
    assert str(caught.value).startswith(f"{tp.templates / 'broken.txt'}:4: ")


def test_a_missing_partial_is_named(tp: TemplateProject) -> None:
    tp.template("lost.html", '<p>x</p>\n{% include "partials/nowhere.html" %}\n')
    with pytest.raises(RenderError) as caught:
        tp.compile(template="lost").render(sample_context())
    assert "partials/nowhere.html" in str(caught.value)
    assert str(caught.value).startswith(str(tp.templates / "lost.html"))


def test_css_is_inlined_once_per_template_not_per_message(tp: TemplateProject,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = inline._inliner

    def counting():  # type: ignore[no-untyped-def]
        calls.append("inline")
        return real()

    monkeypatch.setattr(inline, "_inliner", counting)
    compiled = tp.compile()
    assert compiled.css_note == "inlined once, at compile time"
    at_compile = len(calls)
    assert at_compile >= 1
    first = compiled.render(sample_context("Ada"))
    after_first = len(calls)  # the first message is checked once against per-message inlining
    for name in ("Bob", "Cleo", "Dan", "Eve"):
        compiled.render(sample_context(name))
    assert len(calls) == after_first
    assert first.html is not None and 'style="' in first.html and "<style>@media" in first.html


@pytest.mark.parametrize("template", ["digest", "spotlight"])
def test_inlining_once_gives_the_styles_of_inlining_each_message(tp: TemplateProject, template: str) -> None:
    compiled = tp.compile(template=template)
    assert compiled.fast_html is not None
    context = {**sample_context(), "message": {**sample_context()["message"], "subject": "s", "preheader": "p"}}
    assert compiled.html is not None
    per_message = inline.inline_rendered(compiled.html.render(context))
    once = compiled.fast_html.render(context)
    assert _styles(once) == _styles(per_message)
    assert any("color: #6a5acd" in " ".join(style) for _tag, style in _styles(once))


@pytest.mark.parametrize(("css", "markup", "reason"), [
    ("tr:nth-child(odd) td { background: #eee; }",
     "<table>{% for item in items %}<tr><td>{{ item.title }}</td></tr>{% endfor %}</table>", "rendered structure"),
    ("p { color: red; }", '<p class="{{ recipient.attributes.first_name }}">x</p>', "'class' attribute"),
    ("p { color: {{ recipient.attributes.first_name }}; }", "<p>x</p>", "<style>"),
])
def test_css_that_depends_on_the_recipient_is_inlined_per_message(tp: TemplateProject, css: str, markup: str,
                                                                  reason: str) -> None:
    tp.template("per.html", f"<html><head><style>{css}</style></head><body>{markup}</body></html>\n")
    compiled = tp.compile(template="per")
    assert compiled.fast_html is None
    assert reason in compiled.css_note
    html = compiled.render(sample_context()).html
    assert html is not None and 'style="' in html


def test_a_selector_reaching_into_a_macro_falls_back_to_per_message_inlining(tp: TemplateProject) -> None:
    # `.content .card` spans the layout and the macro file: inlining the macro alone cannot see it.
    layout = (tp.templates / "layouts" / "base.html").read_text()
    tp.template("layouts/base.html", layout.replace("</style>", ".content .card { border: 1px solid red; }\n</style>"))
    compiled = tp.compile()
    assert compiled.fast_html is not None
    html = compiled.render(sample_context()).html
    assert compiled.fast_html is None and "per message" in compiled.css_note
    assert html is not None and "border: 1px solid red" in html


def test_html_past_gmail_clipping_size_warns(tp: TemplateProject) -> None:
    tp.template("huge.html", "<html><body>{% for n in range(4000) %}<p>paragraph {{ n }} of many</p>"
                             "{% endfor %}</body></html>\n")
    rendered = tp.compile(template="huge").render(sample_context())
    assert rendered.html is not None and len(rendered.html.encode()) > GMAIL_CLIP_BYTES
    [warning] = rendered.warnings
    assert "huge.html" in warning and "Gmail clips" in warning
