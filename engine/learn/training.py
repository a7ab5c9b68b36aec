"""Train a campaign's ranker from the event log, validate it on later data, promote it if better.

Validation is by time: the latest ~20% of impressions (whole send days) are held out, the model
is trained on the earlier ones, and it is scored on the held-out days against the model in use
(the promoted one, or the popularity fallback when there is none) on exactly the same rows. It
is promoted only when its primary metric is higher: NDCG@k for LambdaRank, AUC for the pointwise
objective. When every impression is from one day (a one-off experiment, imported), the held-out
part is a seeded random fifth of the recipients instead, and the report says so.

A model is judged only on sends newer than its own training data: the current model may have
learned held-out rows up to the latest row it was trained on (``trained_until``, stored with
it), which would judge it on answers it has seen. Those rows move to the candidate's training
part, and the comparison is made on the rest; with none left, the current model stays.

The objective follows the data: LambdaRank over messages when most impressions share their
message with other items, a pointwise binary objective (goal reached or not) when messages held
one item each, where ranking groups would be degenerate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from engine.errors import ModelError, NothingToTrain
from engine.features.events import DAY, load_events
from engine.learn.dataset import Goal, Impressions, collect_impressions, history_start
from engine.learn.guard import ItemGuard, fit_guard
from engine.learn.metrics import ndcg_at_k, roc_auc
from engine.learn.models import promoted_ranker, save_ranker
from engine.learn.ranker import LightGBMRanker, TrainingData, TrainingParams, base_margin, fit_booster
from engine.spec.model import CampaignSpec
from engine.store import Store, queries

VALIDATION_SHARE = 0.2
HISTORY_DAYS = 90
MIN_IMPRESSIONS = 50
STOPPING_SHARE = 0.1
MIN_ROWS_TO_STOP_EARLY = 2000
BASE_SCORE = "segment_score"


@dataclass(frozen=True)
class TrainingReport:
    """What ``kairos train`` prints for one campaign."""

    campaign: str
    rows: int
    messages: int
    positives: int
    objective: str
    validation: str
    validation_rows: int
    primary: str
    metrics: dict[str, dict[str, float]]
    promoted: bool
    version: str
    model_id: int | None = None
    notes: tuple[str, ...] = field(default=())


def split_rows(impressions: Impressions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(training rows, validation rows, how they were split)."""
    days = np.floor(impressions.ts / DAY)
    distinct = np.unique(days)
    if len(distinct) >= 2:
        order = np.sort(days)
        boundary = order[min(len(order) - 1, int(len(order) * (1 - VALIDATION_SHARE)))]
        boundary = max(boundary, distinct[1])
        valid = days >= boundary
        start = datetime.fromtimestamp(float(boundary * DAY), UTC).date()
        end = datetime.fromtimestamp(float(distinct[-1] * DAY), UTC).date()
        how = f"by time: sends from {start} to {end} held out"
    else:
        held = rng.random(len(impressions.events.recipient_ids)) < VALIDATION_SHARE
        valid = held[impressions.recipient]
        how = "one send day only: a random fifth of the recipients held out"
    return np.flatnonzero(~valid), np.flatnonzero(valid), how


def objective_for(impressions: Impressions) -> str:
    sizes = impressions.group_sizes(np.arange(len(impressions)))
    in_groups = sizes[sizes >= 2].sum()
    return "lambdarank" if in_groups >= 0.5 * len(impressions) else "binary"


def quality(impressions: Impressions, rows: np.ndarray, scores: np.ndarray, k: int) -> dict[str, float]:
    """NDCG@k over the messages of ``rows`` and AUC of reaching the goal."""
    labels = impressions.labels[rows]
    return {f"ndcg@{k}": round(ndcg_at_k(scores, labels, impressions.message[rows], k), 6),
            "auc": round(roc_auc(scores, labels >= impressions.goal.level), 6)}


def fit_ranker(impressions: Impressions, rows: np.ndarray, objective: str, params: TrainingParams, seed: int,
               k: int, version: str) -> LightGBMRanker:
    """Fit on ``rows``; a random tenth of their messages (when there are enough) decides when to stop."""
    schema = impressions.learn_schema(rows, seed)
    matrix, _ = impressions.matrix(schema, rows)
    # With taste segments, trees learn corrections to the segment score rather than rebuild it
    # from their splits: few clicks stop boosting after a handful of trees, too few to do that.
    base = BASE_SCORE if BASE_SCORE in schema.names else None
    margin = base_margin(matrix[:, list(schema.names).index(base)], objective) if base is not None else None

    def data(part: np.ndarray) -> TrainingData:
        init = margin[part] if margin is not None else None
        if objective == "lambdarank":
            return TrainingData(matrix[part], impressions.labels[rows[part]],
                                impressions.group_sizes(rows[part]).tolist(), init)
        return TrainingData(matrix[part], impressions.positive[rows[part]].astype(float), init_score=init)

    messages = impressions.message[rows]
    stop_messages = np.random.default_rng(seed).random(int(messages.max()) + 1 if len(messages) else 0) < STOPPING_SHARE
    enough = params.early_stopping and len(rows) >= MIN_ROWS_TO_STOP_EARLY
    stopping = stop_messages[messages] if enough else np.zeros(len(rows), dtype=bool)
    held = data(np.flatnonzero(stopping)) if stopping.any() else None
    booster = fit_booster(data(np.flatnonzero(~stopping)), schema, objective, params, seed, k, held)
    return LightGBMRanker(booster, schema, objective, version, base=base)


def train_and_validate(impressions: Impressions, current: LightGBMRanker | None, *, campaign: str, k: int,
                       params: TrainingParams, rng: np.random.Generator, version: str,
                       confidence: float | None = None) -> tuple[LightGBMRanker, TrainingReport]:
    """Fit on the earlier part, score the candidate, the current model and popularity on the rest.

    :param confidence: with the pointwise objective (one item per message), also fit the item
        guard of :mod:`engine.learn.guard` at this confidence on the training part.
    """
    if len(impressions) < MIN_IMPRESSIONS or not impressions.positive.any():
        raise ModelError(f"{campaign}: {len(impressions)} impressions with {int(impressions.positive.sum())} "
                         f"reaching the goal: too few to train on (at least {MIN_IMPRESSIONS}, some positive)")
    objective = objective_for(impressions)
    train, valid, how = split_rows(impressions, rng)
    notes: list[str] = []
    seen = current.metrics.get("trained_until") if current is not None else None
    if seen is not None:
        learned = impressions.ts[valid] <= float(seen)
        if learned.any():
            train, valid = np.sort(np.r_[train, valid[learned]]), valid[~learned]
            when = datetime.fromtimestamp(float(seen), UTC).strftime("%Y-%m-%d %H:%M")
            judged = f"{len(valid)} newer rows judge both models" if len(valid) else \
                "no newer rows are left to judge the candidate by, so the current model stays"
            notes.append(f"{int(learned.sum())} held-out rows up to {when} UTC, which the current model may have "
                         f"learned from, moved to training; {judged}")
    seed = int(rng.integers(0, 2**31 - 1))
    candidate = fit_ranker(impressions, train, objective, params, seed, k, version)
    candidate.metrics["decisions"] = len(np.unique(impressions.message[train]))
    candidate.metrics["trained_until"] = float(impressions.ts[train].max())
    assert candidate.schema is not None
    matrix, popularity = impressions.matrix(candidate.schema, valid)
    metrics = {"candidate": quality(impressions, valid, candidate.predict(matrix), k),
               "popularity": quality(impressions, valid, popularity, k)}
    incumbent = "popularity"
    if current is not None and current.schema is not None:
        current_matrix, _ = impressions.matrix(current.schema, valid)
        metrics["current"] = quality(impressions, valid, current.predict(current_matrix), k)
        incumbent = "current"
        notes.append(f"current model {current.version} scored on the same held-out rows")
    if confidence is not None and objective == "binary":
        # The guard cross-validates itself, so it uses every row (validation only compares AUCs).
        candidate.guard = guard_for(impressions, np.arange(len(impressions)), params, seed, k, version, confidence)
        if candidate.guard is not None:
            candidate.metrics["guard"] = candidate.guard.to_json()
            notes.append(guard_note(candidate.guard))
    primary = f"ndcg@{k}" if objective == "lambdarank" else "auc"
    score, to_beat = metrics["candidate"][primary], metrics[incumbent][primary]
    promoted = bool(np.isfinite(score) and (not np.isfinite(to_beat) or score > to_beat))
    candidate.metrics.update({"validation": metrics, "primary": primary})
    report = TrainingReport(
        campaign=campaign, rows=len(impressions), messages=len(np.unique(impressions.message)),
        positives=int(impressions.positive.sum()), objective=objective, validation=how, validation_rows=len(valid),
        primary=primary, metrics=metrics, promoted=promoted, version=version, notes=tuple(notes),
    )
    return candidate, report


def guard_for(impressions: Impressions, rows: np.ndarray, params: TrainingParams, seed: int, k: int,
              version: str, confidence: float) -> ItemGuard | None:
    """The item guard, cross-fitted on ``rows`` with the candidate's settings."""

    def score_fold(fit_rows: np.ndarray, scored_rows: np.ndarray) -> np.ndarray:
        model = fit_ranker(impressions, rows[fit_rows], "binary", params, seed, k, version)
        return impressions.score_every_item(model, rows[scored_rows])

    return fit_guard(impressions.recipient[rows], impressions.item[rows], impressions.positive[rows].astype(float),
                     impressions.propensity[rows], [i.id for i in impressions.items], score_fold, confidence,
                     np.random.default_rng(seed))


def guard_note(guard: ItemGuard) -> str:
    parts = [f"item guard at {guard.confidence:.0%} confidence: {guard.default} by default"]
    for item, e in guard.estimates.items():
        verdict = (f"where its predicted gain is at least {guard.thresholds[item]:.3f}" if item in guard.thresholds
                   else "never (no gain proved positive)")
        parts.append(f"{item} {verdict}: best cut {e['share']:.1%} of the rows, gain {e['gain']:+.4f}, "
                     f"lower bound {e['lower_bound']:+.4f}")
    if guard.eliminated:
        parts.append(f"not explored (worse than {guard.default} on average): {', '.join(guard.eliminated)}")
    return "; ".join(parts)


def load_impressions(store: Store, spec: CampaignSpec, now: datetime, *, history_days: int = HISTORY_DAYS,
                     recipient_ids: Sequence[str] | None = None) -> Impressions:
    """The labelled impressions of ``spec``'s pool items from the last ``history_days`` before ``now``.

    :param recipient_ids: train on these recipients only (everyone by default).
    """
    since = now - timedelta(days=history_days)
    goal = Goal.of(spec.goal_event, spec.goal_window)
    with store.session() as session:
        items = queries.pool_items(session, spec.content.pool)
        events = load_events(session, None, history_start(since), now)
        rows = queries.recipients_by_id(session, list(events.recipient_ids))
    zones = [rows[r].timezone if r in rows else "UTC" for r in events.recipient_ids]
    attributes = [rows[r].attributes if r in rows else {} for r in events.recipient_ids]
    include = None
    if recipient_ids is not None:
        include = np.isin(np.asarray(events.recipient_ids, dtype=object), np.asarray(list(recipient_ids),
                                                                                      dtype=object))
    impressions = collect_impressions(events, items, zones, attributes, goal, since, now, include)
    if len(impressions) == 0:
        raise NothingToTrain(spec.source, "content.pool",
                             f"no logged impressions of items in pool {spec.content.pool!r} in the last "
                             f"{history_days} days to train on: `sent` events with an item_id (import history "
                             "with `kairos import events`, or send the campaign first)",
                             line=spec.line_of("content.pool"))
    return impressions


def train_campaign(store: Store, spec: CampaignSpec, now: datetime, rng: np.random.Generator, *,
                   params: TrainingParams | None = None, history_days: int = HISTORY_DAYS,
                   recipient_ids: Sequence[str] | None = None) -> TrainingReport:
    """Train, validate, store and (if better) promote ``spec``'s ranker. See the module docstring."""
    impressions = load_impressions(store, spec, now, history_days=history_days, recipient_ids=recipient_ids)
    with store.session() as session:
        current = promoted_ranker(session, spec.name)
    version = f"{spec.name}-{now.strftime('%Y%m%dT%H%M%S')}-{int(rng.integers(0, 16**6)):06x}"
    ranker, report = train_and_validate(impressions, current[1] if current else None, campaign=spec.name,
                                        k=spec.content.items, params=params or TrainingParams(), rng=rng,
                                        version=version, confidence=spec.optimize.confidence)
    metrics: dict[str, Any] = {"validation": report.metrics, "primary": report.primary, "rows": report.rows,
                               "objective": report.objective, "split": report.validation}
    with store.session() as session:
        model_id = save_ranker(session, spec.name, ranker, metrics, now)
        if report.promoted:
            queries.promote_model_version(session, model_id)
    return TrainingReport(**{**report.__dict__, "model_id": model_id})
