"""Build a campaign's report from its messages and the events that answered them.

Every number is an array operation over the campaign's messages (one ``bincount`` per table
column), so a report over a million messages costs two streamed reads and some numpy.

*Treated* are the messages that were sent; the *holdout* are the audience members drawn at
random (before frequency capping) to get nothing, whose goal window starts at their planned
send time. Members suppressed, capped or without consent are counted by state but are in
neither group. Reports use the campaign file as it is now (its goal, window and variants).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlmodel import Session

from engine.audience.experiments import SPLITS, arm_posteriors, group_labels
from engine.errors import DataError
from engine.features.events import codes, is_none
from engine.report.model import CampaignReport, GroupSplit, RunSummary, Slice
from engine.report.outcomes import ENGAGEMENT, MessageOutcomes, message_outcomes
from engine.report.stats import Rate, lift, rate, rates
from engine.spec.model import CampaignSpec
from engine.store import Store
from engine.store.campaign_columns import MessageColumns, campaign_runs, read_campaign_messages
from engine.store.columnar import latest_segment_version
from engine.store.tables import MessageState

STATE_ORDER = (MessageState.SENT, MessageState.HOLDOUT, MessageState.SUPPRESSED, MessageState.CAPPED,
               MessageState.NO_CONSENT, MessageState.FAILED, MessageState.REVIEW, MessageState.PLANNED,
               MessageState.CLAIMED, MessageState.SENDING)
NO_GROUP = "(none)"
TIERS = ("high", "medium", "low")  # propensity tiers, listed in this order rather than by name


@dataclass(frozen=True)
class _Frame:
    """The selected messages with their outcomes: masks over the same rows."""

    messages: MessageColumns
    outcomes: MessageOutcomes
    sent: np.ndarray
    held: np.ndarray
    attempted: np.ndarray

    @classmethod
    def of(cls, messages: MessageColumns, outcomes: MessageOutcomes) -> _Frame:
        state = messages.state
        return cls(messages, outcomes, state == MessageState.SENT, state == MessageState.HOLDOUT,
                   np.isin(state, (MessageState.SENT, MessageState.FAILED)))

    def rates_by(self, codes: np.ndarray, k: int, among: np.ndarray, kind: str) -> list[Rate]:
        """Per code 0..k-1, the share of the ``among`` messages with that code that drew ``kind``."""
        keep = among & (codes >= 0)
        trials = np.bincount(codes[keep], minlength=k)
        hits = np.bincount(codes[keep & self.outcomes[kind]], minlength=k)
        return rates(hits, trials)

    def slices(self, names: Sequence[str], codes: np.ndarray, shared_holdout: Rate | None = None,
               compare: bool = True) -> list[Slice]:
        """A :class:`Slice` per name; compared with each code's own holdout members, or with
        ``shared_holdout`` (variants: the holdout got no variant), or with none."""
        k = len(names)
        goal = self.rates_by(codes, k, self.sent, "goal")
        own = self.rates_by(codes, k, self.held, "goal")
        engagement = {kind: self.rates_by(codes, k, self.attempted if kind == "bounce" else self.sent, kind)
                      for kind in ENGAGEMENT}
        found = []
        for j, name in enumerate(names):
            holdout = (shared_holdout or own[j]) if compare else None
            found.append(Slice(name, goal[j], holdout, lift(goal[j], holdout) if holdout is not None else None,
                               {kind: engagement[kind][j] for kind in ENGAGEMENT}))
        return found


def _present(values: np.ndarray, first: Sequence[str] = ()) -> list[str]:
    """``first``, then every other non-None value found, sorted."""
    others: list[str] = np.unique(values[~is_none(values)].astype(str)).tolist() if len(values) else []
    return [*first, *(v for v in others if v not in first)]


def _states_by(codes: np.ndarray, k: int, states: np.ndarray) -> list[dict[str, int]]:
    """Per code 0..k-1, its messages counted by state: the usual states first, always present."""
    names, state_code = np.unique(states.astype(str), return_inverse=True)
    keep = codes >= 0
    table = np.bincount(codes[keep] * len(names) + state_code.reshape(-1)[keep],
                        minlength=k * len(names)).reshape(k, len(names))
    found = []
    for row in table.tolist():
        counts = {name: count for name, count in zip(names.tolist(), row, strict=True) if count}
        ordered = {state: counts.pop(state, 0) for state in STATE_ORDER[:5]}
        ordered.update((state, counts.pop(state)) for state in STATE_ORDER[5:] if state in counts)
        found.append({**ordered, **counts})
    return found


@dataclass(frozen=True)
class _Arms:
    """The variants to report (the campaign's, then any older ones found) and each message's."""

    names: list[str]
    codes: np.ndarray

    @classmethod
    def of(cls, frame: _Frame, spec: CampaignSpec) -> _Arms:
        names = _present(frame.messages.variant[frame.sent], [v.name for v in spec.variants])
        return cls(names, codes(frame.messages.variant, names))


def _variants(frame: _Frame, arms: _Arms, holdout: Rate, rng: np.random.Generator, group: str = "all",
              keep: np.ndarray | None = None) -> list[Slice]:
    """Each variant's slice (against ``holdout``) with its Beta posterior."""
    arm_of = arms.codes if keep is None else np.where(keep, arms.codes, -1)
    found = frame.slices(arms.names, arm_of, holdout)
    posteriors = arm_posteriors(group, arms.names, np.array([s.goal.trials for s in found]),
                                np.array([s.goal.hits for s in found]), rng)
    return [Slice(s.name, s.goal, s.holdout, s.lift, s.engagement, p) for s, p in zip(found, posteriors, strict=True)]


def _groups(frame: _Frame, arms: _Arms, labels: dict[str, str], rng: np.random.Generator) -> list[GroupSplit]:
    ids = np.asarray(list(labels), dtype=str)
    recipients = frame.messages.recipient_id.astype(str)
    if len(ids) and len(recipients):
        order = np.argsort(ids)
        ids, label_of = ids[order], np.asarray(list(labels.values()), dtype=object)[order]
        position = np.searchsorted(ids, recipients).clip(0, len(ids) - 1)
        group_of = np.where(ids[position] == recipients, label_of[position], NO_GROUP)
    else:
        group_of = np.full(len(recipients), NO_GROUP, dtype=object)
    found = _present(group_of[frame.sent | frame.held])
    names = [*(tier for tier in TIERS if tier in found), *(name for name in found if name not in TIERS)]
    group = codes(group_of, names)
    return [GroupSplit(overall, _variants(frame, arms, overall.holdout or rate(0, 0), rng, overall.name,
                                          keep=group == j))
            for j, overall in enumerate(frame.slices(names, group))]


def _runs(session: Session, spec: CampaignSpec, frame: _Frame) -> list[RunSummary]:
    runs = campaign_runs(session, spec.name)
    ids = np.array([r.id for r in runs], dtype=np.int64)  # in id order, as runs are listed
    position = np.searchsorted(ids, frame.messages.run_id).clip(0, max(len(ids) - 1, 0))
    run_of = np.where(ids[position] == frame.messages.run_id, position, -1) if len(ids) else \
        np.full(len(frame.messages), -1, dtype=np.int64)
    treated = frame.rates_by(run_of, len(runs), frame.sent, "goal")
    held = frame.rates_by(run_of, len(runs), frame.held, "goal")
    states = _states_by(run_of, len(runs), frame.messages.state)
    return [RunSummary(int(r.id or 0), r.started_at, r.trigger, r.state, states[j], treated[j], held[j])
            for j, r in enumerate(runs)]


def build_report(session: Session, spec: CampaignSpec, now: datetime, rng: np.random.Generator, *,
                 run: int | None = None, by: str | None = None,
                 labels: dict[str, str] | None = None) -> CampaignReport:
    """The report of ``spec``'s campaign as of ``now``: all runs, or only ``run``.

    :param by: also split by ``segment`` (each recipient's persona in the latest build) or
        ``tier`` (their propensity tier for this campaign, as of now).
    :param labels: {recipient_id: group} to split by instead of computing them for ``by``.
    :param rng: the draws behind each variant's probability of being best.
    :raises DataError: for an unknown ``by``, ``segment`` before any segments are built, or a run
        this campaign does not have.
    """
    if by is not None and by not in SPLITS:
        raise DataError(None, "--by", f"expected one of {', '.join(SPLITS)}, got {by!r}")
    if by == "segment" and labels is None and latest_segment_version(session) is None:
        raise DataError(None, "--by", "no segments are built yet; run `kairos segments build`")
    messages = read_campaign_messages(session, spec.name)
    outcomes = message_outcomes(session, spec.name, messages, spec.goal_event, spec.goal_window, now)
    everything = _Frame.of(messages, outcomes)
    runs = _runs(session, spec, everything)
    frame = everything
    if run is not None:
        if run not in {r.id for r in runs}:
            known = ", ".join(str(r.id) for r in runs) if runs else "none yet"
            raise DataError(None, "--run", f"campaign {spec.name!r} has no run {run} (its runs: {known})")
        keep = messages.run_id == run
        frame = _Frame.of(messages.select(keep), MessageOutcomes({k: v[keep] for k, v in outcomes.reached.items()}))
    [overall] = frame.slices(["all"], np.zeros(len(frame.messages), dtype=np.int64))
    channels = _present(frame.messages.channel[frame.sent], list(spec.channels))
    arms = _Arms.of(frame, spec)
    groups = []
    if by is not None:
        labels = labels if labels is not None else group_labels(session, spec, by, now)
        groups = _groups(frame, arms, labels, rng)
    return CampaignReport(
        campaign=spec.name, goal=spec.goal, goal_event=spec.goal_event, goal_window=spec.goal_window,
        generated_at=now.astimezone(UTC), run=run, runs=runs,
        states=_states_by(np.zeros(len(frame.messages), dtype=np.int64), 1, frame.messages.state)[0],
        overall=overall, variants=_variants(frame, arms, overall.holdout or rate(0, 0), rng),
        channels=frame.slices(channels, codes(frame.messages.channel, channels), compare=False),
        split_by=by, groups=groups)


def campaign_report(store: Store, spec: CampaignSpec, now: datetime, *, run: int | None = None,
                    by: str | None = None, seed: int = 0) -> CampaignReport:
    """:func:`build_report` in a session of ``store``, with P(best) drawn from ``seed``."""
    with store.session() as session:
        return build_report(session, spec, now, np.random.default_rng(seed), run=run, by=by)
