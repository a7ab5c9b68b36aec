"""Learning commands: train the rankers, evaluate a policy off-policy against logged sends."""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
import typer

from engine.cli import app, out
from engine.cli.common import ConfigOption, SeedOption, existing_store, load_settings, now
from engine.config import Settings
from engine.errors import DataError, NothingToTrain
from engine.learn.evaluation import evaluate_campaign
from engine.learn.models import promoted_ranker, ranker_by_version
from engine.learn.ranker import ItemScorer, PopularityScorer
from engine.learn.training import TrainingReport, train_campaign
from engine.spec import campaign_files, find_campaign, load_campaign
from engine.spec.model import CampaignSpec
from engine.store import Store


def _store(settings: Settings) -> Store:
    store = existing_store(settings)
    if store is None:
        raise DataError(settings.source, "database.url", f"no Kairos database at {settings.database_url}; import "
                        "history first (kairos import events FILE) or send a campaign")
    store.create_schema()
    return store


def _specs(settings: Settings, campaigns: list[str] | None) -> list[CampaignSpec]:
    if campaigns:
        return [find_campaign(c, settings.paths.campaigns, settings.paths.templates) for c in campaigns]
    return [load_campaign(p, settings.paths.templates) for p in campaign_files(settings.paths.campaigns)]


def _metric(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4f}"


def print_training(report: TrainingReport) -> None:
    out.print(f"{report.campaign}: {report.rows} impressions in {report.messages} messages "
              f"({report.positives} reaching the goal); objective {report.objective}", markup=False)
    out.print(f"  validation {report.validation} ({report.validation_rows} impressions)", markup=False)
    for metric in report.metrics["candidate"]:
        row = "  ".join(f"{who} {_metric(report.metrics[who].get(metric))}"
                        for who in ("candidate", "current", "popularity") if who in report.metrics)
        out.print(f"  {metric:8} {row}", markup=False)
    for note in report.notes:
        out.print(f"  note: {note}", markup=False)
    if report.promoted:
        out.print(f"  promoted {report.version} (model {report.model_id}): better {report.primary} than the model "
                  "in use on the same held-out sends", markup=False)
    else:
        out.print(f"  stored {report.version} (model {report.model_id}) but kept the model in use: its "
                  f"{report.primary} is not better on the same held-out sends", markup=False)


@app.command()
def train(
    campaigns: Annotated[list[str] | None, typer.Argument(help="campaign files or names (default: all)")] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="train on sends of the last DAYS days")] = 90,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Train each campaign's ranker from the event log (imported history included).

    Validates on the latest sends, prints NDCG@k and AUC next to the model in use and the
    popularity fallback, stores the model in the database and promotes it only if it is
    better. Example: kairos train weekly-digest
    """
    settings = load_settings(config)
    specs = _specs(settings, campaigns)
    store = _store(settings)
    rng = np.random.default_rng(seed)
    for spec in specs:
        try:
            print_training(train_campaign(store, spec, now(), rng, history_days=days))
        except NothingToTrain as exc:
            if campaigns:  # asked for by name: that it cannot be trained is the answer
                raise
            out.print(f"{spec.name}: skipped, nothing to train on yet ({exc.problem}); popularity decides until "
                      "it has sends", markup=False)


@app.command()
def evaluate(
    campaign: Annotated[str, typer.Argument(help="a campaign file, or the name of one in [paths] campaigns")],
    model: Annotated[str | None, typer.Option("--model", help="a stored model version to evaluate instead of "
                                                              "the promoted one ('popularity' for the fallback)")]
    = None,
    days: Annotated[int, typer.Option("--days", min=1, help="evaluate on sends of the last DAYS days")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Estimate how a campaign's item policy would do, from logged sends, before launching it.

    Prints IPS, SNIPS and doubly robust estimates of the goal rate of the first slot with
    bootstrap intervals, the effective sample size and the largest weight, next to the logged
    policy's own rate. Example: kairos evaluate weekly-digest --model weekly-digest-20261102T090000-a1b2c3
    """
    settings = load_settings(config)
    spec = find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)
    store = _store(settings)
    scorer: ItemScorer
    with store.session() as session:
        if model == "popularity":
            scorer = PopularityScorer()
        elif model is not None:
            found = ranker_by_version(session, spec.name, model)
            if found is None:
                raise DataError(None, "--model", f"no stored model {model!r} for campaign {spec.name!r}; "
                                "`kairos train` prints the versions it stores")
            scorer = found[1]
        else:
            promoted = promoted_ranker(session, spec.name)
            scorer = promoted[1] if promoted is not None else PopularityScorer()
    result = evaluate_campaign(store, spec, scorer, now(), np.random.default_rng(seed), days=days)
    if as_json:
        out.print(json.dumps(result.to_json()), markup=False)
        return
    report = result.report
    out.print(f"{spec.name}: policy {result.scorer} on {report.decisions} logged first-slot sends of the last "
              f"{days} days ({result.skipped} without a propensity skipped)", markup=False)
    out.print(f"  logged policy  {report.logged.value:.4f}  [{report.logged.low:.4f}, {report.logged.high:.4f}]",
              markup=False)
    for name, estimate in report.estimates.items():
        out.print(f"  {name:<13}  {estimate.value:.4f}  [{estimate.low:.4f}, {estimate.high:.4f}]", markup=False)
    out.print(f"  effective sample size {report.effective_sample_size:.0f} of {report.decisions}, largest weight "
              f"{report.max_weight:.2f}", markup=False)
