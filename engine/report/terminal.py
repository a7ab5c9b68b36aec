"""A campaign report as rich tables on a terminal.

Every cell is plain text (campaign, variant and segment names are the user's, and brackets in
them are not markup).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.report.formatting import DASH, RUNS_SHOWN, capped_note, duration, lift_cell, lift_sentence, rate_cell, share
from engine.report.model import CampaignReport, Slice
from engine.report.stats import Rate

POSTERIOR_COLUMNS = ("rate [95% CI]", "lift [95% CI]", "posterior [95% CrI]", "P(best)")


def _table(title: str, *columns: str, names: int = 1) -> Table:
    """A table whose first ``names`` columns are names (left) and the rest numbers (right)."""
    table = Table(title=Text(title, style="bold"), title_justify="left")
    for j, name in enumerate(columns):
        table.add_column(Text(name), justify="left" if j < names else "right")
    return table


def _row(table: Table, *cells: str) -> None:
    table.add_row(*(Text(cell) for cell in cells))


def _variant_rows(table: Table, slices: list[Slice], group: str | None = None) -> None:
    for piece in slices:
        arm = piece.posterior
        posterior = (f"{arm.mean:.1%} [{arm.low:.1%}, {arm.high:.1%}]", f"{arm.p_best:.0%}") if arm else (DASH, DASH)
        first = [group] if group is not None else []
        _row(table, *first, piece.name, f"{piece.goal.trials:,}", f"{piece.goal.hits:,}", rate_cell(piece.goal),
             lift_cell(piece.lift), *posterior)


def _goal(console: Console, report: CampaignReport) -> None:
    overall = report.overall
    goal = _table(f"Goal: {report.goal_event} within {duration(report.goal_window)}", "group", "members", "reached",
                  "rate [95% CI]")
    _row(goal, "treated (sent)", f"{overall.goal.trials:,}", f"{overall.goal.hits:,}", rate_cell(overall.goal))
    if overall.holdout is not None:
        _row(goal, "holdout", f"{overall.holdout.trials:,}", f"{overall.holdout.hits:,}", rate_cell(overall.holdout))
    console.print(goal)
    console.print(lift_sentence(overall.lift), markup=False)
    if (note := capped_note(report.states)) is not None:
        console.print(note, markup=False)
    engagement = _table("Engagement of sent messages", "response", "messages", "rate [95% CI]")
    for kind, rate in overall.engagement.items():
        _row(engagement, kind, f"{rate.hits:,} of {rate.trials:,}", rate_cell(rate))
    console.print(engagement)


def _splits(console: Console, report: CampaignReport) -> None:
    variants = _table("Variants (lift against the whole holdout; * = significant)", "variant", "sent", "reached",
                      *POSTERIOR_COLUMNS)
    _variant_rows(variants, report.variants)
    console.print(variants)
    channels = _table("Channels", "channel", "sent", "goal rate", "open", "click", "unsubscribe")
    for piece in report.channels:
        _row(channels, piece.name, f"{piece.goal.trials:,}", rate_cell(piece.goal),
             *(share(piece.engagement[k]) for k in ("open", "click", "unsubscribe")))
    console.print(channels)
    if report.split_by is None:
        return
    by = report.split_by
    groups = _table(f"By {by} (each against its own holdout members)", by, "treated", "rate", "holdout",
                    "holdout rate", "lift [95% CI]")
    inside = _table(f"Variants by {by}", by, "variant", "sent", "reached", *POSTERIOR_COLUMNS, names=2)
    for split in report.groups:
        piece = split.overall
        held = piece.holdout or Rate(0, 0, None, None)
        _row(groups, piece.name, f"{piece.goal.trials:,}", rate_cell(piece.goal), f"{held.trials:,}",
             rate_cell(held), lift_cell(piece.lift))
        _variant_rows(inside, split.variants, piece.name)
    console.print(groups)
    if report.groups:
        console.print(inside)


def _runs(console: Console, report: CampaignReport) -> None:
    runs = _table("Runs", "run", "started", "trigger", "state", "sent", "holdout", "treated rate", "holdout rate",
                  names=4)
    for run in report.runs[-RUNS_SHOWN:]:
        _row(runs, str(run.id), run.started_at.isoformat(timespec="minutes"), run.trigger, run.state,
             f"{run.states.get('sent', 0):,}", f"{run.states.get('holdout', 0):,}", rate_cell(run.goal),
             rate_cell(run.holdout))
    console.print(runs)
    if len(report.runs) > RUNS_SHOWN:
        console.print(f"the latest {RUNS_SHOWN} of {len(report.runs):,} runs; --json lists them all", markup=False)


def print_report(console: Console, report: CampaignReport) -> None:
    """Print ``report``: states, the goal against the holdout with the lift, engagement, the splits
    by variant, channel and (when asked) segment or tier, and the runs."""
    scope = f"run {report.run}" if report.run is not None else f"all runs ({len(report.runs)})"
    heading = Text(report.campaign, style="bold")
    heading.append(f": goal {report.goal} ({report.goal_event} within {duration(report.goal_window)}) · {scope} · "
                   f"{report.messages:,} messages", style="")
    console.print(heading)
    states = _table("Messages by state", "state", "messages")
    for state, count in report.states.items():
        _row(states, state, f"{count:,}")
    console.print(states)
    _goal(console, report)
    _splits(console, report)
    if report.run is None and len(report.runs) > 1:
        _runs(console, report)
