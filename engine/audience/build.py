"""Who a run is for, and why each member is or is not sent to.

Every recipient who matches ``[audience] where`` is a member with one status:

- ``no_consent``: no consent (or no address) for any of the campaign's channels;
- ``suppressed``: unsubscribed, hard-bounced, complained or erased;
- ``holdout``: in the campaign's holdout, kept so its lift can be measured;
- ``capped``: already sent ``frequency_cap.max`` messages in ``frequency_cap.per``;
- ``send``: everyone else.

The holdout is drawn among consenting, unsuppressed members before the frequency cap, so capping
never biases who is held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlmodel import Session

from engine.audience.behaviour import RecipientColumns
from engine.spec.model import CampaignSpec
from engine.spec.rules import evaluate
from engine.store import queries
from engine.store.queries import RecipientRow

STATUSES = ("send", "holdout", "suppressed", "capped", "no_consent")


@dataclass(frozen=True)
class Member:
    recipient: RecipientRow
    status: str


def holdout_draw(campaign: str, recipient_ids: Sequence[str]) -> np.ndarray:
    """A uniform number in [0, 1) per recipient, fixed for (campaign, recipient) across runs."""
    values = np.empty(len(recipient_ids))
    prefix = campaign.encode() + b"\x1f"
    for position, recipient_id in enumerate(recipient_ids):
        digest = hashlib.blake2b(prefix + recipient_id.encode(), digest_size=8).digest()
        values[position] = int.from_bytes(digest, "big") / 2.0**64
    return values


def reachable(recipient: RecipientRow, channel: str) -> bool:
    """Consent and an address for ``channel``: an email address, or an active push device."""
    if channel == "email":
        return recipient.consent_email and bool(recipient.email)
    if channel == "push":
        return recipient.consent_push and recipient.has_device
    return False


def build_audience(session: Session, spec: CampaignSpec, now: datetime) -> list[Member]:
    """The members of ``spec``'s audience at ``now``, in recipient id order, with their status."""
    recipients = queries.all_recipients(session)
    if not recipients:
        return []
    if spec.audience.where is not None:
        mask = evaluate(spec.audience.where, len(recipients), RecipientColumns(session, recipients, now))
        recipients = [r for r, keep in zip(recipients, mask, strict=True) if keep]
    if not recipients:
        return []

    status = np.full(len(recipients), "send", dtype=object)
    consenting = np.array([any(reachable(r, c) for c in spec.channels) for r in recipients], dtype=bool)
    status[~consenting] = "no_consent"

    suppressed_ids = set()
    for channel in spec.channels:
        suppressed_ids |= queries.suppressed_recipients(session, recipients, channel)
    suppressed = np.array([r.id in suppressed_ids for r in recipients], dtype=bool) & consenting
    status[suppressed] = "suppressed"

    eligible = status == "send"
    if spec.audience.holdout > 0:
        held = (holdout_draw(spec.name, [r.id for r in recipients]) < spec.audience.holdout) & eligible
        status[held] = "holdout"

    cap = spec.audience.frequency_cap
    if cap is not None:
        counts = queries.recipient_event_counts(session, ["sent"], now - cap.per)
        sent = np.array([counts.get((r.id, "sent"), 0) for r in recipients])
        status[(sent >= cap.max) & (status == "send")] = "capped"

    return [Member(r, str(s)) for r, s in zip(recipients, status, strict=True)]
