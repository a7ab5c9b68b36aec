"""What a campaign report holds, and its JSON form (the schema scripts rely on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.audience.experiments import ArmPosterior
from engine.report.stats import Lift, Rate

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Slice:
    """The treated messages of one slice (everything, a variant, a channel, a segment ...).

    :param goal: the goal rate of its sent messages.
    :param holdout: the goal rate of the holdout members it is compared with (None where no
        holdout compares: a channel is chosen per recipient, so no random holdout matches it).
    :param engagement: open, click, unsubscribe and complaint rates of sent messages; bounce
        rate of delivery attempts (sent or failed).
    :param posterior: the variant's Beta posterior (variant slices only).
    """

    name: str
    goal: Rate
    holdout: Rate | None
    lift: Lift | None
    engagement: dict[str, Rate]
    posterior: ArmPosterior | None = None


@dataclass(frozen=True)
class GroupSplit:
    """One segment or tier: its treated members against its own holdout members, and each
    variant within it (a variant that wins overall can lose here)."""

    overall: Slice
    variants: list[Slice]


@dataclass(frozen=True)
class RunSummary:
    id: int
    started_at: datetime
    trigger: str
    state: str
    states: dict[str, int]
    goal: Rate
    holdout: Rate


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    goal: str
    goal_event: str
    goal_window: timedelta
    generated_at: datetime
    run: int | None
    runs: list[RunSummary]
    states: dict[str, int]
    overall: Slice
    variants: list[Slice]
    channels: list[Slice]
    split_by: str | None = None
    groups: list[GroupSplit] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(self.states.values())


def rate_json(rate: Rate) -> dict[str, Any]:
    return {"hits": rate.hits, "trials": rate.trials, "rate": rate.value, "low": rate.low, "high": rate.high}


def lift_json(lift: Lift) -> dict[str, Any]:
    return {"absolute": lift.absolute, "low": lift.low, "high": lift.high, "relative": lift.relative,
            "relative_low": lift.relative_low, "relative_high": lift.relative_high, "significant": lift.significant}


def posterior_json(arm: ArmPosterior) -> dict[str, Any]:
    return {"mean": arm.mean, "low": arm.low, "high": arm.high, "p_best": arm.p_best}


def slice_json(piece: Slice) -> dict[str, Any]:
    return {
        "name": piece.name, "goal": rate_json(piece.goal),
        "holdout": rate_json(piece.holdout) if piece.holdout is not None else None,
        "lift": lift_json(piece.lift) if piece.lift is not None else None,
        "engagement": {kind: rate_json(r) for kind, r in piece.engagement.items()},
        "posterior": posterior_json(piece.posterior) if piece.posterior is not None else None,
    }


def report_json(report: CampaignReport) -> dict[str, Any]:
    """The report as JSON-ready data: rates as {hits, trials, rate, low, high}, times in ISO 8601."""
    return {
        "schema": SCHEMA_VERSION,
        "campaign": report.campaign, "goal": report.goal, "goal_event": report.goal_event,
        "goal_window_seconds": report.goal_window.total_seconds(),
        "generated_at": report.generated_at.isoformat(), "run": report.run,
        "runs": [{"id": r.id, "started_at": r.started_at.isoformat(), "trigger": r.trigger, "state": r.state,
                  "states": r.states, "goal": rate_json(r.goal), "holdout": rate_json(r.holdout)}
                 for r in report.runs],
        "messages": report.messages, "states": report.states,
        "overall": slice_json(report.overall),
        "variants": [slice_json(v) for v in report.variants],
        "channels": [slice_json(c) for c in report.channels],
        "split": None if report.split_by is None else {
            "by": report.split_by,
            "groups": [{**slice_json(g.overall), "variants": [slice_json(v) for v in g.variants]}
                       for g in report.groups],
        },
    }
