"""``kairos report CAMPAIGN``: what a campaign did, against its holdout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import app, out
from engine.cli.common import ConfigOption, SeedOption, load_settings, now, open_store
from engine.errors import DataError
from engine.report import campaign_report, print_report, report_json, write_html
from engine.spec import find_campaign, values
from engine.spec.model import CampaignSpec

SPLITS_HELP = "also split by persona 'segment' (latest build) or propensity 'tier'"


def _with_goal(spec: CampaignSpec, goal: str | None, window: str | None) -> CampaignSpec:
    """``spec`` judged by another goal event and window, as the options ask."""
    try:
        if goal is not None:
            spec = dataclasses.replace(spec, goal=values.goal(goal))
    except ValueError as exc:
        raise DataError(None, "--goal", f"expected {exc}, got {goal!r}") from None
    try:
        if window is not None:
            spec = dataclasses.replace(spec, goal_window=values.positive_duration(window))
    except ValueError as exc:
        raise DataError(None, "--window", f"expected {exc}, got {window!r}") from None
    return spec


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="a campaign file, or the name of one in [paths] campaigns")],
    run: Annotated[int | None, typer.Option("--run", help="only this run (default: all runs)")] = None,
    by: Annotated[str | None, typer.Option("--by", help=SPLITS_HELP)] = None,
    goal: Annotated[str | None, typer.Option("--goal", help="report on this event (open, click, conversion or "
                                             "a custom one) instead of the campaign's goal")] = None,
    window: Annotated[str | None, typer.Option("--window", help="with --goal: its window, e.g. 7d "
                                               "(default: the campaign's goal_window)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="also write a self-contained HTML report here",
                                              dir_okay=False)] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Report a campaign: messages by state, the goal rate of treated against holdout members with
    the lift and its 95% interval, engagement, and splits by variant (with each variant's
    posterior), channel, and segment or tier.

    With --goal, the same report for another outcome: what a click-optimized campaign did for
    conversions, say (a holdout member cannot click a message it never got, but can convert).

    Example: kairos report weekly-digest --by segment --html report.html
    """
    settings = load_settings(config)
    spec = find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)
    spec = _with_goal(spec, goal, window)
    if html is not None and not html.parent.is_dir():
        raise DataError(None, "--html", f"{html.parent} is not a directory")
    result = campaign_report(open_store(settings), spec, now(), run=run, by=by, seed=seed if seed is not None else 0)
    if html is not None:
        write_html(result, html)
    if as_json:
        typer.echo(json.dumps(report_json(result)))
        return
    print_report(out, result)
    if html is not None:
        out.print(f"wrote {html}", markup=False)
