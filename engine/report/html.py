"""The report as one self-contained HTML file: inline CSS and SVG charts, no external resources.

Rendered through Jinja with autoescaping on, so campaign, variant and segment names are text,
never markup.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from engine.report import formatting
from engine.report.charts import report_charts
from engine.report.model import CampaignReport

TEMPLATES = Path(__file__).parent / "templates"
FILTERS = ("percent", "points", "share", "rate_cell", "lift_cell", "lift_sentence", "duration", "capped_note")


def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    environment.filters.update({name: getattr(formatting, name) for name in FILTERS})
    return environment


def render_html(report: CampaignReport) -> str:
    """The report as an HTML document."""
    template = _environment().get_template("report.html")
    return template.render(report=report, charts=report_charts(report), runs_shown=formatting.RUNS_SHOWN)


def write_html(report: CampaignReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")
