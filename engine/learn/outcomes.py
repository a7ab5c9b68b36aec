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
from engine.store.campaign_columns import outcome_log_chunks

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
    overall. Groups without messages are absent. The log is read a chunk of whole recipients at
    a time (:func:`engine.store.campaign_columns.outcome_log_chunks`): what stays is the counts,
    the goals' delays and the messages still inside their goal window.
    """
    kinds = (goal_event, "unsubscribe", "complaint")
    types = list(dict.fromkeys(kinds))
    groups = sorted(set(labels.values()) - {ALL})
    tally = OutcomeTally(len(variants), groups, goal_window.total_seconds(), now.timestamp())
    for log in outcome_log_chunks(session, campaign, variants, types, now, with_recipients=bool(labels)):
        reached, delays = [], np.zeros(0)
        for index, kind in enumerate(kinds):  # the goal first, then the guardrail's two
            chosen = (log.response_type == types.index(kind)) & (log.response_ts < now.timestamp())
            window = goal_window if kind == goal_event else max(goal_window, GUARDRAIL_WINDOW)
            credited = last_touch(log.send_recipient, log.send_ts, log.response_recipient[chosen],
                                  log.response_ts[chosen], window.total_seconds())
            hit = np.zeros(len(log.send_ts), dtype=bool)
            hit[credited[credited >= 0]] = True
            reached.append(hit)
            if index == 0:
                delays = first_goal_delays(log.send_ts, credited, log.response_ts[chosen])
        group = (codes([labels.get(r) for r in log.recipients], groups)[log.send_recipient] if log.recipients
                 else np.full(len(log.send_ts), -1, dtype=np.int64))
        tally.add(log.send_ts, log.send_variant, group, reached[0], delays, reached[1], reached[2])
    return tally.outcomes()


class OutcomeTally:
    """Per-variant outcomes summed over chunks of the outcome log, overall and per group.

    Counts add up as chunks arrive. The goal's trial weights need every goal's delay first (see
    the module docstring), so what is kept to the end is those delays and the pending messages
    (sent, unanswered, still inside their goal window), counted by variant, group and age: a
    batch's messages share their send time, so these are a few numbers per batch, not per message.
    """

    def __init__(self, arms: int, groups: Sequence[str], window_seconds: float, now: float) -> None:
        self.arms, self.groups = arms, list(groups)
        self.window, self.now = window_seconds, now
        # sends, goals, unsubscribes, complaints; row 0 overall, row 1 + g for group g
        self.counts = np.zeros((4, len(self.groups) + 1, arms))
        self.settled: list[np.ndarray] = []
        self.reached: list[np.ndarray] = []
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # (cell, age) rows and their counts

    def add(self, sent_ts: np.ndarray, arm: np.ndarray, group: np.ndarray, goal: np.ndarray, delays: np.ndarray,
            unsubscribed: np.ndarray, complained: np.ndarray) -> None:
        """Messages sent at ``sent_ts`` of variant ``arm`` (-1: another) to recipients in ``group``
        (-1: none): whether each reached the goal (after ``delays``), an unsubscribe or a complaint."""
        known = arm >= 0
        for row, hit in enumerate((known, known & goal, known & unsubscribed, known & complained)):
            self.counts[row] += self._by_group(arm[hit], group[hit])
        age = self.now - sent_ts
        self.settled.append(delays[goal & (age >= self.window)])
        self.reached.append(delays[goal])
        pending = known & ~goal & (age < self.window)
        cells = (group[pending] + 1) * self.arms + arm[pending]
        if len(cells):
            self.pending.append(np.unique(np.column_stack([cells, age[pending]]), axis=0, return_counts=True))

    def outcomes(self) -> dict[str, ArmOutcomes]:
        """Overall (key :data:`ALL`) and per group; groups without messages are absent."""
        sends, goals, unsubscribes, complaints = self.counts
        trials = sends.copy()
        settled, reached = np.concatenate([[], *self.settled]), np.concatenate([[], *self.reached])
        delays = np.sort(settled if len(settled) >= MIN_DELAYS else reached)
        if len(delays) >= MIN_DELAYS and self.pending:
            rows, counts = (np.concatenate(column) for column in zip(*self.pending, strict=True))
            cells, age = rows[:, 0].astype(np.int64), rows[:, 1]
            trials += self._by_cell(cells, pending_weights(delays, age) * counts) - self._by_cell(cells, counts)
        return {name: ArmOutcomes(sends[row], goals[row], unsubscribes[row], complaints[row], trials[row])
                for row, name in enumerate([ALL, *self.groups]) if sends[row].sum() > 0}

    def _by_cell(self, cells: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values`` summed per variant, overall (row 0) and per group, from (group + 1) * arms + arm."""
        k, groups = self.arms, len(self.groups)
        table = np.bincount(cells, weights=values, minlength=(groups + 1) * k).reshape(groups + 1, k)
        return np.vstack([table.sum(axis=0), table[1:]])

    def _by_group(self, arm: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Messages per variant, overall (row 0) and per group (-1: none)."""
        return self._by_cell((group + 1) * self.arms + arm, np.ones(len(arm)))


def first_goal_delays(sent_ts: np.ndarray, credited: np.ndarray, goal_ts: np.ndarray) -> np.ndarray:
    """Each message's delay to its first credited goal (inf when none).

    :param credited: for each goal event (at ``goal_ts``), the message it is credited to, or -1.
    """
    first = np.full(len(sent_ts), np.inf)
    to_message = credited >= 0
    np.minimum.at(first, credited[to_message], goal_ts[to_message] - sent_ts[credited[to_message]])
    return first


def pending_weights(delays: np.ndarray, age: np.ndarray) -> np.ndarray:
    """The share of goals (``delays``, sorted) that arrive within each pending message's ``age``."""
    return np.asarray(np.searchsorted(delays, np.maximum(age, 0.0), side="right") / len(delays))
