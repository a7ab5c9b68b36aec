"""A campaign whose outcomes are planted: known goal rates for treated and holdout members, and a
variant that wins with one persona and loses with the other."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from engine.spec import load_campaign
from engine.spec.model import CampaignSpec
from engine.store import Store
from engine.store.tables import Event, Message, Run, RunState
from tests.conftest import ROOT

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # the CLI reports as of the real now
PLANNED = NOW - timedelta(days=5)
CAMPAIGN = """
    [campaign]
    name = "spring-sale"
    goal = "convert"
    goal_window = "48h"

    [audience]
    holdout = 0.1

    [content]
    pool = "news"

    [channels]
    allowed = ["email", "push"]

    [[variants]]
    name = "bold"
    subject = "Bold"
    template = "digest"
    push_body = "Bold deals"

    [[variants]]
    name = "calm"
    subject = "Calm"
    template = "digest"
    push_body = "Calm deals"
"""
SEGMENTS = ("bargain-hunters", "news-readers")
# P(conversion) of treated members per (segment, variant), and of holdout members.
TREATED_RATES = {("bargain-hunters", "bold"): 0.22, ("bargain-hunters", "calm"): 0.06,
                 ("news-readers", "bold"): 0.06, ("news-readers", "calm"): 0.22}
HOLDOUT_RATE = 0.05


def write_campaign(directory: Path) -> CampaignSpec:
    path = directory / "spring-sale.toml"
    path.write_text(textwrap.dedent(CAMPAIGN))
    return load_campaign(path, ROOT / "templates")


@dataclass
class Planted:
    """What was planted, to compare a report with."""

    states: dict[str, int] = field(default_factory=dict)
    treated: int = 0
    treated_goals: int = 0
    holdout: int = 0
    holdout_goals: int = 0
    opens: int = 0
    segment_of: dict[str, str] = field(default_factory=dict)
    arms: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (segment, variant) -> [sent, goals]

    @property
    def true_lift(self) -> float:
        return float(np.mean(list(TREATED_RATES.values()))) - HOLDOUT_RATE


def _state(n: int) -> str:
    if n % 20 in (0, 11):  # 10%, in both segments and both variants' turns
        return "holdout"
    return {1: "suppressed", 3: "no_consent", 5: "capped", 7: "failed"}.get(n % 50, "sent")


def plant(store: Store, recipients: int = 6000, seed: int = 7) -> Planted:
    """One run of ``spring-sale`` with messages in every state and conversions drawn at the planted
    rates (inside the goal window), plus conversions that must not count."""
    rng = np.random.default_rng(seed)
    truth = Planted()
    messages: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    opened: list[tuple[str, datetime]] = []  # tracked opens name their message, known once stored
    with store.session() as session:
        run = Run(campaign="spring-sale", spec_hash="x", trigger="manual", started_at=PLANNED,
                  state=RunState.FINISHED, finished_at=PLANNED + timedelta(hours=2))
        session.add(run)
        session.flush()
        run_id = run.id
    for n in range(recipients):
        recipient, state = f"r{n:05d}", _state(n)
        segment, variant = SEGMENTS[n % 2], ("bold", "calm")[(n // 2) % 2]
        truth.segment_of[recipient] = segment
        truth.states[state] = truth.states.get(state, 0) + 1
        sent_at = PLANNED + timedelta(hours=1) if state == "sent" else None
        treated = state in ("sent", "failed")
        messages.append({"run_id": run_id, "campaign": "spring-sale", "recipient_id": recipient,
                         "state": state, "send_at": PLANNED, "sent_at": sent_at,
                         "channel": ("email", "push")[n % 3 == 0] if treated else None,
                         "variant": variant if treated else None, "attempts": int(treated), "updated_at": PLANNED})
        if state not in ("sent", "holdout"):
            continue
        start = sent_at or PLANNED
        goal_rate = TREATED_RATES[(segment, variant)] if state == "sent" else HOLDOUT_RATE
        reached = bool(rng.random() < goal_rate)
        if state == "sent":
            truth.treated += 1
            truth.treated_goals += reached
            arm = truth.arms.setdefault((segment, variant), [0, 0])
            arm[0] += 1
            arm[1] += reached
            if rng.random() < 0.4:
                truth.opens += 1
                opened.append((recipient, start + timedelta(minutes=30)))
        else:
            truth.holdout += 1
            truth.holdout_goals += reached
        if reached:  # a shop's conversion: names no campaign and no message
            events.append(_event(f"g{n}", recipient, "conversion", start + timedelta(hours=rng.uniform(1, 40))))
        elif n % 7 == 0:  # too late to count
            events.append(_event(f"late{n}", recipient, "conversion", start + timedelta(hours=60)))
        elif n % 11 == 0:  # credited to another campaign
            events.append(_event(f"other{n}", recipient, "conversion", start + timedelta(hours=3), campaign="other"))
    with store.session() as session:
        session.execute(sa.insert(Message), messages)
        message_of = dict(session.execute(sa.select(Message.recipient_id, Message.id)
                                          .where(Message.run_id == run_id)).all())
        events += [_event(f"o{recipient}", recipient, "open", ts, message_id=message_of[recipient],
                          campaign="spring-sale") for recipient, ts in opened]
        session.execute(sa.insert(Event), events)
    return truth


def _event(event_id: str, recipient: str, kind: str, ts: datetime, *, message_id: int | None = None,
           campaign: str | None = None) -> dict[str, Any]:
    return {"id": event_id, "recipient_id": recipient, "type": kind, "ts": ts, "campaign": campaign,
            "message_id": message_id, "item_id": None, "channel": None, "variant": None, "position": None,
            "propensity": None, "value": None, "run_id": None, "data": None}
