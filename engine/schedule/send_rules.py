"""Rules across every campaign, applied at the moment of sending, in each recipient's local time.

- Quiet hours (``sending.quiet_hours = ["21:00", "08:00"]``): a message due inside them waits
  until they end, where the recipient lives.
- A daily cap (``sending.daily_cap = 2``): a recipient who already got that many messages today
  (their local calendar day, all campaigns together) gets no more today: the message is
  ``capped``.

Campaign rules (``audience.frequency_cap``, ``schedule.quiet_hours``) apply when a run is
planned; these apply to whatever is due, so two campaigns planned independently still respect
one limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlmodel import Session

from engine.store import outbox
from engine.store.queries import RecipientRow
from engine.store.tables import MessageState


@dataclass(frozen=True)
class SendRules:
    """``quiet_hours``: (start, end) minutes of the local day, wrapping midnight when start > end."""

    quiet_hours: tuple[int, int] | None = None
    daily_cap: int | None = None

    @property
    def active(self) -> bool:
        return self.quiet_hours is not None or self.daily_cap is not None


def quiet_until(rules: SendRules, zone: ZoneInfo, now: datetime) -> datetime | None:
    """When the quiet hours the recipient is in now end, or None when they are not in them."""
    if rules.quiet_hours is None:
        return None
    start, end = rules.quiet_hours
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    ends = midnight + timedelta(minutes=end)  # wall-clock arithmetic: right across a DST change
    return ends if ends > local else ends + timedelta(days=1)


class DueMessage(Protocol):
    """What the rules read of a due message (a claimed one, or a stored :class:`Message`)."""

    @property
    def id(self) -> int | None: ...

    @property
    def recipient_id(self) -> str: ...


M = TypeVar("M", bound=DueMessage)


@dataclass(frozen=True)
class Verdict(Generic[M]):
    allowed: list[M]
    changes: list[dict[str, Any]]
    deferred: int
    capped: int


def apply_send_rules(session: Session, rules: SendRules, batch: Sequence[M],
                     recipients: dict[str, RecipientRow], now: datetime) -> Verdict[M]:
    """Split a claimed batch into what may go now, and changes for what may not."""
    if not rules.active:
        return Verdict(list(batch), [], 0, 0)
    sent_today: Counter[str] = Counter()
    if rules.daily_cap is not None:
        for recipient_id, sent_at in outbox.sent_since(session, [m.recipient_id for m in batch],
                                                       now - timedelta(days=1)):
            recipient = recipients.get(recipient_id)
            zone = ZoneInfo(recipient.timezone if recipient else "UTC")
            if sent_at.astimezone(zone).date() == now.astimezone(zone).date():
                sent_today[recipient_id] += 1
    allowed: list[M] = []
    changes: list[dict[str, Any]] = []
    deferred = capped = 0
    for message in batch:
        recipient = recipients.get(message.recipient_id)
        if recipient is None:
            allowed.append(message)  # the pump reports a missing recipient
            continue
        zone = ZoneInfo(recipient.timezone)
        until = quiet_until(rules, zone, now)
        if until is not None:
            changes.append({"id": message.id, "state": MessageState.PLANNED, "send_at": until, "updated_at": now,
                            "claimed_by": None, "claimed_at": None})
            deferred += 1
        elif rules.daily_cap is not None and sent_today[message.recipient_id] >= rules.daily_cap:
            changes.append({"id": message.id, "state": MessageState.CAPPED, "updated_at": now,
                            "last_error": f"daily cap of {rules.daily_cap} reached in the recipient's local day"})
            capped += 1
        else:
            sent_today[message.recipient_id] += 1  # two due messages of one batch count too
            allowed.append(message)
    return Verdict(allowed, changes, deferred, capped)
