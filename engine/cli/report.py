"""``kairos report CAMPAIGN``: what a campaign did, against its holdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import app, out
from engine.cli.common import ConfigOption, SeedOption, load_settings, now, open_store
from engine.errors import DataError
from engine.report import campaign_report, print_report, report_json, write_html
from engine.spec import find_campaign

SPLITS_HELP = "also split by persona 'segment' (latest build) or propensity 'tier'"


@app.command()
def report(
    campaign: Annotated[str, typer.Argument(help="a campaign file, or the name of one in [paths] campaigns")],
    run: Annotated[int | None, typer.Option("--run", help="only this run (default: all runs)")] = None,
    by: Annotated[str | None, typer.Option("--by", help=SPLITS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="also write a self-contained HTML report here",
                                              dir_okay=False)] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Report a campaign: messages by state, the goal rate of treated against holdout members with
    the lift and its 95% interval, engagement, and splits by variant (with each variant's
    posterior), channel, and segment or tier.

    Example: kairos report weekly-digest --by segment --html report.html
    """
    settings = load_settings(config)
    spec = find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)
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
