"""Template injection is refused: reaching for Python internals fails with a RenderError naming the
template and line, and the template never runs."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import RenderError
from tests.render.conftest import TemplateProject, sample_context

ATTACKS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ recipient.__class__ }}",
    "{{ cycler.__init__.__globals__.os.system('touch pwned') }}",
    "{{ lipsum.__globals__['__builtins__'] }}",
    "{{ __builtins__ }}",
    "{{ recipient['__class__'] }}",
    "{{ recipient | attr('__class__') }}",
    "{{ range.mro() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ items | map(attribute='__class__') | list }}",
    "{% set x = namespace(a=recipient) %}{{ x.a._TemplateReference__context }}",
]
RUNTIME_ATTACKS = [
    "{{ recipient | attr('__cla' ~ 'ss__') }}",       # built at run time: refused by the sandbox itself
    "{{ (items | attr('ap' ~ 'pend'))(1) }}",          # mutating the data
    "{{ dict.fromkeys }}",                             # attributes of a class
    "{{ (cycler | attr('res' ~ 'et')) }}",
]


class Probe:
    """Counts its calls: a template that is refused must not have called it."""

    def __init__(self) -> None:
        self.calls = 0

    def touch(self) -> str:
        self.calls += 1
        return "touched"


@pytest.mark.parametrize("attack", ATTACKS)
def test_reaching_for_internals_is_refused_before_the_template_runs(tp: TemplateProject, attack: str) -> None:
    tp.template("evil.html", f"""
        <p>{{{{ probe.touch() }}}}</p>
        <p>line two</p>
        <p>{attack}</p>
    """)
    probe = Probe()
    with pytest.raises(RenderError) as caught:
        tp.compile(template="evil").render({**sample_context(), "probe": probe})
    assert str(caught.value).startswith(f"{tp.templates / 'evil.html'}:3: ")
    assert "refused by the sandbox" in str(caught.value)
    assert probe.calls == 0  # refused when compiled: not one line of it ran


@pytest.mark.parametrize("attack", RUNTIME_ATTACKS)
def test_internals_reached_at_run_time_are_refused_with_the_line(tp: TemplateProject, attack: str) -> None:
    tp.template("sly.txt", f"first line\n{attack}\n")
    context: dict[str, Any] = sample_context()
    with pytest.raises(RenderError) as caught:
        tp.compile(template="sly").render(context)
    assert str(caught.value).startswith(f"{tp.templates / 'sly.txt'}:2: ")
    assert "refused by the sandbox" in str(caught.value)
    assert len(context["items"]) == 2


def test_an_attack_in_a_subject_names_the_campaign_file_and_field(tp: TemplateProject) -> None:
    with pytest.raises(RenderError) as caught:
        tp.compile(subject="Hi {{ recipient.__class__ }}")
    message = str(caught.value)
    assert message.startswith(f"{tp.path / 'campaigns' / 'news.toml'}:12: variants[0].subject: ")
    assert "refused by the sandbox" in message


def test_an_attack_in_a_partial_names_the_partial(tp: TemplateProject) -> None:
    tp.template("partials/footer.html", "<p>ok</p>\n<p>{{ recipient.__dict__ }}</p>\n")
    with pytest.raises(RenderError) as caught:
        tp.compile().render(sample_context())
    assert str(caught.value).startswith(f"{tp.templates / 'partials' / 'footer.html'}:2: ")


def test_ordinary_data_access_still_works(tp: TemplateProject) -> None:
    tp.template("ok.txt", "{{ recipient.attributes.items() | list | length }} {{ items | map(attribute='id') "
                          "| join(',') }} {{ recipient.attributes.get('first_name') }}\n")
    rendered = tp.compile(template="ok").render(sample_context())
    assert rendered.text.startswith("1 n0,n1 Ada")


def test_a_key_named_like_a_dict_method_still_finds_the_method(tp: TemplateProject) -> None:
    # Jinja looks an attribute up before an item; the sandbox's shortcut to the item keeps that.
    tp.template("keys.txt", "{{ recipient.attributes.copy is callable }} {{ recipient.attributes.title }} "
                            "{{ recipient.attributes.missing is defined }}\n")
    context = sample_context()
    context["recipient"]["attributes"] = {"copy": "a value", "title": "Dr"}
    assert tp.compile(template="keys").render(context).text == "True Dr False\n"


def test_jinja_globals_reach_every_template_and_a_variable_shadows_one(tp: TemplateProject) -> None:
    tp.template("partials/count.txt", "{% for n in range(2) %}{{ n }}{% endfor %}")
    tp.template("globals.txt", "{% set ns = namespace(total=0) %}{% for n in range(3) %}{% set ns.total = "
                               "ns.total + n %}{% endfor %}{{ ns.total }} {% include 'partials/count.txt' %} "
                               "{{ cycler('a', 'b').next() }} {{ dict(a=1).a }} {{ joiner is defined }}\n")
    context = sample_context()
    assert tp.compile(template="globals").render(context).text == "3 01 a 1 True\n"
    context["joiner"] = "mine"
    tp.template("shadow.txt", "{{ joiner }}\n")
    assert tp.compile(template="shadow").render(context).text == "mine\n"


def test_an_imported_templates_macros_and_variables_are_reached_and_nothing_else(tp: TemplateProject) -> None:
    # The sandbox's shortcuts for an imported template's exports and for calling a macro.
    tp.template("macros/kit.txt", "{% set greeting = 'Hello' %}{% macro shout(text) %}{{ text | upper }}"
                                  "{% endmacro %}")
    tp.template("kit.txt", "{% import 'macros/kit.txt' as kit %}{{ kit.greeting }} {{ kit.shout('you') }} "
                           "{{ kit.missing is defined }}\n")
    assert tp.compile(template="kit").render(sample_context()).text == "Hello YOU False\n"
    tp.template("kit_strict.txt", "{% import 'macros/kit.txt' as kit %}{{ kit.missing }}\n")
    with pytest.raises(RenderError, match="undefined"):
        tp.compile(template="kit_strict").render(sample_context())
    tp.template("kit_private.txt", "{% import 'macros/kit.txt' as kit %}{% set under = '_' %}"
                                   "{{ kit | attr(under ~ 'body_stream') }}\n")
    with pytest.raises(RenderError, match="refused by the sandbox"):
        tp.compile(template="kit_private").render(sample_context())
