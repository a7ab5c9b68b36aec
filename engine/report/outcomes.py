"""Which of a campaign's messages reached the goal, and which were opened, clicked, unsubscribed from,
bounced or complained about.

An event that names its message (tracked links, opens, unsubscribes and bounces do) is credited
to that message. Any other event — a conversion posted by a shop, an imported click — is
credited by last touch (:func:`engine.learn.attribution.last_touch`, as the bandit credits its
arms) to the recipient's latest touch of this campaign at or before it: a message that was sent,
or a holdout member's planned send time, since the holdout got no message. The goal counts only
inside ``goal_window`` after the touch; the other responses inside the longer of that and seven
days. Events that name another campaign are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.learn.attribution import last_touch
from engine.store.campaign_columns import MessageColumns, ResponseColumns, read_campaign_responses
from engine.store.tables import MessageState

ENGAGEMENT = ("open", "click", "unsubscribe", "bounce", "complaint")
ENGAGEMENT_WINDOW = timedelta(days=7)
TOUCHES = (MessageState.SENT, MessageState.HOLDOUT)
_EARLY = 1.0  # seconds: an event stamped a moment before its send (clock skew) still counts


@dataclass(frozen=True)
class MessageOutcomes:
    """Per message of :class:`MessageColumns`, whether it drew each response (``goal`` and
    :data:`ENGAGEMENT`)."""

    reached: dict[str, np.ndarray]

    def __getitem__(self, kind: str) -> np.ndarray:
        return self.reached[kind]


def message_outcomes(session: Session, campaign: str, messages: MessageColumns, goal_event: str,
                     goal_window: timedelta, now: datetime) -> MessageOutcomes:
    """Read the responses to ``messages`` up to ``now`` and credit them (see the module docstring)."""
    kinds = dict.fromkeys((goal_event, *ENGAGEMENT))
    engagement_window = max(goal_window, ENGAGEMENT_WINDOW)
    if not len(messages):
        return MessageOutcomes({kind: np.zeros(0, dtype=bool) for kind in ("goal", *ENGAGEMENT)})
    since = datetime.fromtimestamp(float(messages.at.min()) - _EARLY, UTC)
    until = min(now, datetime.fromtimestamp(float(messages.at.max()), UTC) + engagement_window)
    responses = read_campaign_responses(session, campaign, list(kinds), since, until)
    reached = {kind: credit(messages, responses, kind, engagement_window.total_seconds()) for kind in ENGAGEMENT}
    reached["goal"] = credit(messages, responses, goal_event, goal_window.total_seconds(), direct_window=True)
    return MessageOutcomes(reached)


def credit(messages: MessageColumns, responses: ResponseColumns, kind: str, window_seconds: float, *,
           direct_window: bool = False) -> np.ndarray:
    """Per message, whether an event of ``kind`` is credited to it.

    :param direct_window: also hold events that name their message to the window.
    """
    reached = np.zeros(len(messages), dtype=bool)
    chosen = np.flatnonzero(responses.type == kind)
    if not len(chosen) or not len(messages):
        return reached
    ts = responses.ts[chosen]
    position = np.searchsorted(messages.id, responses.message_id[chosen]).clip(0, len(messages) - 1)
    direct = messages.id[position] == responses.message_id[chosen]
    if direct_window:
        elapsed = ts - messages.at[position]
        direct &= (elapsed > -_EARLY) & (elapsed <= window_seconds)
    reached[position[direct]] = True
    touches = np.flatnonzero(np.isin(messages.state, TOUCHES))
    loose = ~direct & (responses.message_id[chosen] < 0)
    if len(touches) and loose.any():
        _, codes = np.unique(np.concatenate([messages.recipient_id[touches],
                                             responses.recipient_id[chosen][loose]]).astype(str), return_inverse=True)
        codes = codes.reshape(-1)
        credited = last_touch(codes[:len(touches)], messages.at[touches], codes[len(touches):], ts[loose],
                              window_seconds)
        reached[touches[credited[credited >= 0]]] = True
    return reached

