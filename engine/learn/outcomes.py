"""Per-variant outcomes of a campaign, from the event log, for the bandit and its guardrail.

Each message the campaign sent (across all its runs, so a recurring campaign carries its
posteriors over) is a trial of its variant. A goal event, unsubscribe or complaint is credited
to the recipient's latest message of the campaign before it (last touch), if it came inside the
window: ``goal_window`` for the goal, at least seven days for unsubscribes and complaints.
Events naming another campaign are not credited. Recomputed as events arrive.

Delayed feedback: a message sent an hour ago has had little chance to reach a 48-hour goal yet,
and counting it as a failure biases the bandit against whichever variant sent most recently
(the one it favours). So for the goal each message is a *fraction* of a trial: 1 once its goal
arrived or its window has passed, else the share of goals that arrive within its age, from the
campaign's own delays between a message and its goal (those of messages whose window has
passed, when at least :data:`MIN_DELAYS` of them exist, else all observed ones). With fewer than
:data:`MIN_DELAYS` goals so far there is no such curve, and every message counts whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.features.events import codes
from engine.learn.attribution import last_touch
from engine.learn.bandit.base import ArmOutcomes
from engine.store.campaign_columns import read_outcome_log

GUARDRAIL_WINDOW = timedelta(days=7)
ALL = "(all)"  # the key of the campaign-wide outcomes among the groups'
MIN_DELAYS = 30


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
    kinds = (goal_event, "unsubscribe", "complaint")
    types = list(dict.fromkeys(kinds))
    log = read_outcome_log(session, campaign, variants, types, now, with_recipients=bool(labels))
    if not len(log.send_ts):
        return {}
    arm = log.send_variant
    reached = []
    trial = np.ones(len(log.send_ts))
    for kind in kinds:
        chosen = (log.response_type == types.index(kind)) & (log.response_ts < now.timestamp())
        window = goal_window if kind == goal_event else max(goal_window, GUARDRAIL_WINDOW)
        credited = last_touch(log.send_recipient, log.send_ts, log.response_recipient[chosen],
                              log.response_ts[chosen], window.total_seconds())
        hit = np.zeros(len(log.send_ts), dtype=bool)
        hit[credited[credited >= 0]] = True
        reached.append(hit)
        if kind == goal_event:
            trial = goal_trial_weights(log.send_ts, hit, credited, log.response_ts[chosen], window.total_seconds(),
                                       now.timestamp())
    names = sorted(set(labels.values()) - {ALL})
    person_group = codes([labels.get(r) for r in log.recipients or []], names)
    group = person_group[log.send_recipient] if len(person_group) else np.full(len(arm), -1)
    found: dict[str, ArmOutcomes] = {}
    for name, rows in [(ALL, arm >= 0), *((n, (arm >= 0) & (group == g)) for g, n in enumerate(names))]:
        if rows.any():
            k = len(variants)
            goals, unsubscribes, complaints = (np.bincount(arm[rows & hit], minlength=k).astype(float)
                                               for hit in reached)
            found[name] = ArmOutcomes(np.bincount(arm[rows], minlength=k).astype(float), goals, unsubscribes,
                                      complaints, np.bincount(arm[rows], weights=trial[rows], minlength=k))
    return found


def goal_trial_weights(sent_ts: np.ndarray, reached: np.ndarray, credited: np.ndarray, goal_ts: np.ndarray,
                       window_seconds: float, now: float) -> np.ndarray:
    """Each message's weight as a trial of the goal (see the module docstring).

    :param credited: for each goal event (at ``goal_ts``), the message it is credited to, or -1.
    """
    weights = np.ones(len(sent_ts))
    to_message = credited >= 0
    first = np.full(len(sent_ts), np.inf)
    np.minimum.at(first, credited[to_message], goal_ts[to_message] - sent_ts[credited[to_message]])
    age = now - sent_ts
    settled = reached & (age >= window_seconds)
    delays = np.sort(first[settled] if int(settled.sum()) >= MIN_DELAYS else first[reached])
    if len(delays) < MIN_DELAYS:
        return weights
    pending = ~reached & (age < window_seconds)
    weights[pending] = np.searchsorted(delays, np.maximum(age[pending], 0.0), side="right") / len(delays)
    return weights
