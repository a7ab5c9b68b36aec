"""Who a run is for, and why each member is or is not sent to.

Selection is columnar (:func:`select_recipients`): the ``[audience] where`` rule is evaluated as
vector operations over every recipient, and ``predicted`` keeps those whose predicted probability
of the goal is high enough, whatever their attributes. Every selected recipient is a member with
one status:

- ``no_consent``: no consent (or no address) for any of the campaign's channels;
- ``suppressed``: unsubscribed, hard-bounced, complained or erased (an erased recipient is
  matched by the hash of their address or id, so a re-import stays suppressed);
- ``holdout``: in the campaign's holdout, kept so its lift can be measured;
- ``capped``: already sent ``frequency_cap.max`` messages in ``frequency_cap.per``;
- ``send``: everyone else.

The holdout is drawn among consenting, unsuppressed members before the frequency cap, so capping
never biases who is held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlmodel import Session

from engine.audience.behaviour import RecipientColumns, RecipientFrame, UnknownSegment, load_frame, rule_columns
from engine.audience.propensity import PropensityModel, TopicGoalRates, assign_tiers, top_share
from engine.errors import SpecError
from engine.spec.model import CampaignSpec
from engine.spec.rules import RuleTypeError, evaluate
from engine.store import columnar
from engine.store.queries import RecipientRow, address_hash, recipient_hash

STATUSES = ("send", "holdout", "suppressed", "capped", "no_consent")


@dataclass(frozen=True, slots=True)
class Member:
    recipient: RecipientRow
    status: str
    score: float | None = None
    tier: str | None = None


@dataclass(frozen=True)
class Selection:
    """Every recipient (``frame``), which of them the audience selects, and their scores if computed."""

    frame: RecipientFrame
    selected: np.ndarray
    scores: np.ndarray | None = None
    tiers: np.ndarray | None = None
    model: str | None = None

    @property
    def ids(self) -> list[str]:
        return self.frame.ids.take(np.flatnonzero(self.selected))


def holdout_draw(campaign: str, recipient_ids: Sequence[str]) -> np.ndarray:
    """A uniform number in [0, 1) per recipient, fixed for (campaign, recipient) across runs."""
    prefix = campaign.encode() + b"\x1f"
    blake2b = hashlib.blake2b
    return np.fromiter((int.from_bytes(blake2b(prefix + r.encode(), digest_size=8).digest(), "big") / 2.0**64
                        for r in recipient_ids), dtype=float, count=len(recipient_ids))


def reachable(recipient: RecipientRow, channel: str) -> bool:
    """Consent and an address for ``channel``: an email address, or an active push device."""
    if channel == "email":
        return recipient.consent_email and bool(recipient.email)
    if channel == "push":
        return recipient.consent_push and recipient.has_device
    return False


def _located(spec: CampaignSpec, field: str, column: int, problem: str) -> SpecError:
    return SpecError(spec.source, field, problem, line=spec.line_of(field), column=column)


def select_recipients(session: Session, spec: CampaignSpec, now: datetime,
                      model: PropensityModel | None = None) -> Selection:
    """Evaluate ``where`` and ``predicted`` over every recipient, as vectors. Writes nothing.

    :param model: the propensity model for ``predicted`` and ``tier()`` (default :class:`TopicGoalRates`).
    :raises SpecError: when the rule cannot run on the stored data (an unknown segment), located
        at its column in the campaign file.
    """
    audience = spec.audience
    fields, attributes = rule_columns(audience.where)
    frame = load_frame(session, fields, attributes)
    propensity = model or TopicGoalRates()
    scores: np.ndarray | None = None
    tiers: np.ndarray | None = None
    if audience.needs_scores and len(frame):
        scores = propensity.predict(session, frame, spec, now)
        tiers = assign_tiers(scores, audience.tiers)
    selected = np.ones(len(frame), dtype=bool)
    if audience.where is not None and len(frame):
        labels = tiers
        resolver = RecipientColumns(session, frame, now, tiers=(lambda: labels) if labels is not None else None)
        try:
            selected = evaluate(audience.where, len(frame), resolver, now)
        except UnknownSegment as exc:
            raise _located(spec, "audience.where", exc.column, exc.problem) from None
        except RuleTypeError as exc:
            raise _located(spec, "audience.where", exc.column, exc.problem) from None
    if audience.predicted is not None and scores is not None:
        if audience.predicted.min_probability is not None:
            selected &= scores >= audience.predicted.min_probability
        elif audience.predicted.top_percent is not None:
            selected = top_share(scores, selected, audience.predicted.top_percent)
    return Selection(frame, selected, scores, tiers, propensity.name if scores is not None else None)


def suppressed_mask(recipients: Sequence[RecipientRow], sets: columnar.SuppressionSets) -> np.ndarray:
    """True where a recipient is in ``sets`` (the suppressions of a campaign's channels), by id or
    by hashed address or id."""
    by_id = sets.recipient_ids
    found = np.fromiter((r.id in by_id for r in recipients), dtype=bool, count=len(recipients))
    if sets.address_hashes:
        hashes = sets.address_hashes
        found |= np.fromiter(((bool(r.email) and address_hash(r.email or "") in hashes)
                              or recipient_hash(r.id) in hashes for r in recipients), dtype=bool,
                             count=len(recipients))
    return found


AUDIENCE_CHUNK = 10_000


def build_audience(session: Session, spec: CampaignSpec, now: datetime,
                   model: PropensityModel | None = None, *, attributes: bool = True) -> list[Member]:
    """The members of ``spec``'s audience at ``now``, in recipient id order, with their status.

    :param attributes: False: members' rows come without their attributes (see
        :func:`engine.store.columnar.read_recipient_rows`).
    """
    return [member for chunk in audience_chunks(session, spec, now, model, attributes=attributes)
            for member in chunk]


def audience_chunks(session: Session, spec: CampaignSpec, now: datetime, model: PropensityModel | None = None,
                    *, attributes: bool = True, size: int = AUDIENCE_CHUNK) -> Iterator[list[Member]]:
    """:func:`build_audience` a chunk of at most ``size`` members at a time, in id order.

    Selection, scores and tiers are columns over everyone (a few bytes per recipient); the rows and
    members, a Python object each, exist for one chunk at a time, so planning a large audience
    holds one chunk of them however large it grows. Each chunk's rows are read through the
    primary key, from its first selected id to its last.
    """
    selection = select_recipients(session, spec, now, model)
    chosen = np.flatnonzero(selection.selected)
    suppressions = columnar.suppression_sets(session, spec.channels)
    cap = spec.audience.frequency_cap
    sent: np.ndarray | None = None
    if cap is not None:
        sent, _ = selection.frame.scatter(columnar.event_counts(session, "sent", now - cap.per), 0.0)
    for start in range(0, len(chosen), size):
        chunk = selection.frame.ids.take(chosen[start:start + size])
        wanted = set(chunk)
        recipients = columnar.read_recipient_rows(session, wanted.__contains__, attributes=attributes,
                                                  first=chunk[0], last=chunk[-1])
        yield _members(spec, selection, recipients, suppressions, sent)


def _members(spec: CampaignSpec, selection: Selection, recipients: list[RecipientRow],
             suppressions: columnar.SuppressionSets, sent: np.ndarray | None) -> list[Member]:
    """Each recipient's status (the module docstring's order) and, if computed, score and tier."""
    status = np.full(len(recipients), "send", dtype=object)
    consenting = np.fromiter((any(reachable(r, c) for c in spec.channels) for r in recipients), dtype=bool,
                             count=len(recipients))
    status[~consenting] = "no_consent"
    status[suppressed_mask(recipients, suppressions) & consenting] = "suppressed"

    eligible = status == "send"
    if spec.audience.holdout > 0:
        held = (holdout_draw(spec.name, [r.id for r in recipients]) < spec.audience.holdout) & eligible
        status[held] = "holdout"

    at = selection.frame.positions([r.id for r in recipients])
    cap = spec.audience.frequency_cap
    if cap is not None and sent is not None:
        status[(sent[at] >= cap.max) & (status == "send")] = "capped"

    scores: list[float | None] = [None] * len(recipients)
    tiers: list[str | None] = [None] * len(recipients)
    if selection.scores is not None and selection.tiers is not None:
        scores = [float(v) for v in selection.scores[at]]
        tiers = [str(v) for v in selection.tiers[at]]
    statuses = {value: str(value) for value in np.unique(status)}  # five strings, not one per member
    return [Member(r, statuses[s], score, tier)
            for r, s, score, tier in zip(recipients, status, scores, tiers, strict=True)]
