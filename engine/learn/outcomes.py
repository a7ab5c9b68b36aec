"""Per-variant outcomes of a campaign, from the event log, for the bandit and its guardrail.

Each message the campaign sent (across all its runs, so a recurring campaign carries its
posteriors over) is a trial of its variant. A goal event, unsubscribe or complaint is credited
to the recipient's latest message of the campaign before it (last touch), if it came inside the
window: ``goal_window`` for the goal, at least seven days for unsubscribes and complaints.
Events naming another campaign are not credited. Recomputed as events arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.features.events import codes, vocabulary
from engine.learn.attribution import last_touch
from engine.learn.bandit.base import ArmOutcomes
from engine.store.campaign_columns import read_campaign_responses, read_campaign_sends

GUARDRAIL_WINDOW = timedelta(days=7)
ALL = "(all)"  # the key of the campaign-wide outcomes among the groups'


def arm_outcomes(session: Session, campaign: str, variants: Sequence[str], goal_event: str,
                 goal_window: timedelta, now: datetime) -> ArmOutcomes:
    """Per-variant outcomes of every message ``campaign`` sent before ``now``."""
    return arm_outcomes_by_group(session, campaign, variants, goal_event, goal_window, now, {}).get(
        ALL, ArmOutcomes.empty(len(variants)))


def arm_outcomes_by_group(session: Session, campaign: str, variants: Sequence[str], goal_event: str,
                          goal_window: timedelta, now: datetime, labels: Mapping[str, str]) -> dict[str, ArmOutcomes]:
    """Per-variant outcomes overall (key :data:`ALL`) and per group of ``labels`` ({recipient: group}).

    A message counts for the group its recipient is in now; recipients in no group count only
    overall. Groups without messages are absent.
    """
    sends = read_campaign_sends(session, campaign, now)
    if not len(sends.ts):
        return {}
    since = datetime.fromtimestamp(float(sends.ts.min()), now.tzinfo)
    kinds = (goal_event, "unsubscribe", "complaint")
    responses = read_campaign_responses(session, campaign, list(dict.fromkeys(kinds)), since, now)
    people = vocabulary(list(sends.recipient_id) + list(responses.recipient_id))
    send_who = codes(sends.recipient_id, people)
    arm = codes(sends.variant, list(variants))
    reached = []
    for kind in kinds:
        chosen = (responses.type == kind) & (responses.ts < now.timestamp())
        who = codes(responses.recipient_id[chosen], people)
        window = goal_window if kind == goal_event else max(goal_window, GUARDRAIL_WINDOW)
        credited = last_touch(send_who, sends.ts, who, responses.ts[chosen], window.total_seconds())
        hit = np.zeros(len(sends.ts), dtype=bool)
        hit[credited[credited >= 0]] = True
        reached.append(hit)
    names = sorted(set(labels.values()) - {ALL})
    group = codes([labels.get(r) for r in sends.recipient_id], names)
    found: dict[str, ArmOutcomes] = {}
    for name, rows in [(ALL, arm >= 0), *((n, (arm >= 0) & (group == g)) for g, n in enumerate(names))]:
        if rows.any():
            k = len(variants)
            found[name] = ArmOutcomes(np.bincount(arm[rows], minlength=k).astype(float),
                                      *(np.bincount(arm[rows & hit], minlength=k).astype(float) for hit in reached))
    return found
