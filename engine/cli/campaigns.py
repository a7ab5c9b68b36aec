"""Campaign commands: validate, plan, send."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, TextIO

import numpy as np
import typer

from engine.cli import app, err, out
from engine.cli.common import (
    ConfigOption,
    SeedOption,
    existing_store,
    load_settings,
    now,
    open_store,
    with_tracking_secret,
)
from engine.config import Settings
from engine.decide import Decision, Policy
from engine.errors import KairosError, SpecError
from engine.render.compose import EmailComposer
from engine.render.samples import compose_samples, load_samples
from engine.render.templates import TemplateSet
from engine.schedule.planning import PlannedMember, plan_members, require_content
from engine.schedule.send import Helpers, SendReport, build_context, send_campaign
from engine.spec import campaign_files, find_campaign, load_campaign
from engine.spec.model import CampaignSpec
from engine.store import Store

CampaignArgument = Annotated[str, typer.Argument(help="a campaign file, or the name of one in [paths] campaigns")]


@app.command()
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="campaign files (default: all in [paths] campaigns)")]
    = None,
    config: ConfigOption = None,
) -> None:
    """Check campaign files: keys, types, cron, templates, rules, and content pools.

    Every file is checked and every error printed as file:line: field: problem. Exit code 2
    when any file is invalid. Example: kairos validate campaigns/weekly-digest.toml
    """
    settings = load_settings(config)
    paths = files or list(campaign_files(settings.paths.campaigns))
    if not paths:
        raise SpecError(settings.paths.campaigns, None, "no campaign files (.toml, .yaml) to validate")
    store = existing_store(settings)
    invalid = 0
    for path in paths:
        try:
            spec = load_campaign(path, settings.paths.templates)
            if store is not None:
                require_content(store, spec, now())
            rendered = render_every_variant(settings, spec, store)
        except KairosError as exc:
            invalid += 1
            err.print(f"error: {exc}", markup=False)
            continue
        if rendered is None:
            invalid += 1
            continue
        note = "" if store is not None else " (content pool not checked: no database yet)"
        out.print(f"ok  {path}  {spec.name}: goal {spec.goal}, {len(spec.variants)} variant(s){note}; "
                  f"{rendered}", markup=False)
    if invalid:
        err.print(f"{invalid} of {len(paths)} campaign file(s) invalid")
        raise typer.Exit(2)


def render_every_variant(settings: Settings, spec: CampaignSpec, store: Store | None) -> str | None:
    """Render every variant of ``spec`` for sample recipients, printing each template error (with
    its file and line) and warning; a summary when all rendered, None when any failed."""
    composer = EmailComposer.from_settings(settings, spec, TemplateSet(settings.paths.templates),
                                           secret=settings.tracking.secret or b"validate: links are not used")
    check = compose_samples(composer, load_samples(store, spec, now()), now())
    for warning in check.warnings:
        err.print(f"warning: {spec.source}: {warning}", markup=False)
    for error in dict.fromkeys(str(e) for e in check.errors):
        err.print(f"error: {error}", markup=False)
    if check.errors:
        return None
    return (f"every variant rendered for {len(check.samples.recipients)} sample recipient(s) from "
            f"{check.samples.source}")


def _plan_row(entry: PlannedMember, decision: Decision | None, candidates: bool) -> dict[str, Any]:
    member, when = entry.member, entry.send_time
    status = member.status if member.status != "send" or decision is not None else "no_consent"
    row: dict[str, Any] = {
        "recipient_id": member.recipient.id, "status": status,
        "channel": None, "variant": None, "send_at": None, "items": [],
        "channel_probability": None, "variant_probability": None, "propensity": None, "model_versions": {},
    }
    if decision is not None and when is not None:
        log = decision.log()
        row.update({key: log[key] for key in ("channel", "variant", "items", "channel_probability",
                                              "variant_probability", "propensity", "model_versions")})
        row["send_at"] = when.at.isoformat()
        row["send_time"] = {"local_hour": when.local_hour, "probability": when.probability, "model": when.model}
    if candidates:
        row["candidates"] = [{"id": i, "slot": s, "probability": p}
                             for i, s, p in (decision.candidates if decision else ())]
    return row


def write_plan(settings: Settings, spec: CampaignSpec, handle: TextIO, *, candidates: bool,
               rng: np.random.Generator) -> dict[str, int]:
    """Write the plan JSONL of DESIGN.md for ``spec`` as of now; returns counts by status."""
    store = open_store(settings)
    moment = now()
    require_content(store, spec, moment)
    counts: dict[str, int] = {}
    policy = Policy(spec, rng)
    with store.session() as session:
        planned = plan_members(session, spec, moment, rng=rng)
        items = policy.item_table(session, moment)
        batch = settings.sending.batch_size
        for start in range(0, len(planned), batch):
            chunk = planned[start:start + batch]
            sending = [p.member.recipient for p in chunk if p.member.status == "send"]
            decisions = {d.recipient_id: d for d in
                         policy.decide(session, sending, moment, candidates=candidates, items=items)}
            for entry in chunk:
                row = _plan_row(entry, decisions.get(entry.member.recipient.id), candidates)
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                handle.write(json.dumps(row, separators=(",", ":")) + "\n")
        session.rollback()  # planning is read-only
    return counts


@app.command()
def plan(
    campaign: CampaignArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the JSONL plan here",
                                                dir_okay=False)] = None,
    candidates: Annotated[bool, typer.Option("--candidates", help="include every item's per-slot probability")]
    = False,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Show what a run would do now, per recipient, without sending or storing anything.

    One JSON object per audience member: status, channel, variant, send_at, items with their
    scores and probabilities. Example: kairos plan weekly-digest --output plan.jsonl --candidates
    """
    settings = load_settings(config)
    spec = find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)
    rng = np.random.default_rng(seed)
    if output is None:
        import sys
        counts = write_plan(settings, spec, sys.stdout, candidates=candidates, rng=rng)
    else:
        with output.open("w", encoding="utf-8") as handle:
            counts = write_plan(settings, spec, handle, candidates=candidates, rng=rng)
        out.print(f"wrote {sum(counts.values())} plan rows to {output}: " + _counts(counts))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"


def print_send_report(spec: CampaignSpec, report: SendReport) -> None:
    if report.resumed:
        out.print(f"{spec.name}: resuming unfinished run {report.run_id} instead of starting a new one")
        if report.resumed_from_pause:
            out.print(f"  it had paused: {report.resumed_from_pause}")
        if report.released:
            out.print(f"  {report.released} claimed but unsent message(s) returned to the queue")
        if report.review:
            out.print(f"  {len(report.review)} message(s) were in flight when the last sender stopped; they may "
                      f"or may not have been delivered and are marked 'review', not re-sent "
                      f"(message ids {', '.join(map(str, report.review[:20]))}"
                      f"{' ...' if len(report.review) > 20 else ''})")
    else:
        out.print(f"{spec.name}: run {report.run_id} planned for {sum(report.planned.values())} audience "
                  f"member(s): {_counts(report.planned)}")
    out.print(f"  message states now: {_counts(report.states)}")
    if report.bounced:
        out.print(f"  {report.bounced} recipient(s) refused permanently (5xx): recorded as bounces and suppressed")
    if report.in_flight_review:
        ids = report.in_flight_review
        out.print(f"  {len(ids)} message(s) lost their connection after being handed over, before the server's "
                  f"answer; they may or may not have been delivered and are marked 'review', not re-sent "
                  f"(message ids {', '.join(map(str, ids[:20]))}{' ...' if len(ids) > 20 else ''})")
    if report.deferred:
        when = report.next_at.isoformat(timespec='minutes') if report.next_at else "later"
        out.print(f"  {report.deferred} message(s) wait for their send time (next at {when}); "
                  "`kairos daemon` sends them, or `kairos send --now` sends them all now")
    for error in dict.fromkeys(report.errors):
        err.print(f"  failed: {error}", markup=False)


@app.command()
def send(
    campaign: CampaignArgument,
    now_all: Annotated[bool, typer.Option("--now", help="send every planned message now, "
                                                         "ignoring optimized send times")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64,
                                         help="sending processes (decide and render use one core each)")] = 1,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Plan a run now and send every message that is due; resumes an unfinished run.

    Returns when every due message is sent or has failed. Exit code 1 when messages failed for
    a reason other than a recipient's permanent refusal, or when the run paused because the
    server kept failing (run it again to resume). Example: kairos send weekly-digest --workers 2
    """
    settings = load_settings(config)
    spec = find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)
    store = open_store(settings)
    settings = with_tracking_secret(settings, store)
    ctx = build_context(settings, store, spec, np.random.default_rng(seed), now, senders=workers)
    crew = Helpers(workers - 1, settings, spec, seed).start(store) if workers > 1 else None
    report = asyncio.run(send_campaign(ctx, now_all=now_all, crew=crew))
    print_send_report(spec, report)
    if report.paused is not None:
        err.print(f"run {report.run_id} paused: {report.paused}. Nothing more was sent; "
                  f"{report.states.get('planned', 0)} message(s) stay planned. Run `kairos send {spec.name}` "
                  "again to resume it once the server is back.", markup=False)
        raise typer.Exit(1)
    if report.failed:
        err.print(f"{report.failed} message(s) failed to send after retries; they are marked 'failed' "
                  f"(see the messages of run {report.run_id})")
        raise typer.Exit(1)
