"""The report as one self-contained HTML file: inline CSS and SVG charts, no external resources.

Rendered through Jinja with autoescaping on, so campaign, variant and segment names are text,
never markup.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from engine.report.charts import report_charts
from engine.report.formatting import RUNS_SHOWN, duration, lift_cell, lift_sentence, percent, points, rate_cell, share
from engine.report.model import CampaignReport

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=False, lstrip_blocks=False)
    environment.filters.update(percent=percent, points=points, rate_cell=rate_cell, lift_cell=lift_cell,
                               lift_sentence=lift_sentence, duration=duration, share=share)
    return environment


def render_html(report: CampaignReport) -> str:
    """The report as an HTML document."""
    return _environment().get_template("report.html").render(report=report, charts=report_charts(report),
                                                                    runs_shown=RUNS_SHOWN)


def write_html(report: CampaignReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")
