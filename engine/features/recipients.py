"""Per-recipient features for a batch, fresh from the event log up to now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.store import queries

AFFINITY_DAYS = 90


def topic_affinity(session: Session, recipient_ids: Sequence[str], topic_names: Sequence[str],
                   now: datetime) -> np.ndarray:
    """(recipients x topics) click rate on each topic relative to the recipient's own rate.

    Smoothed: (clicks_t + r) / (sends_t + 1) / r where r is the recipient's overall click rate
    (itself smoothed), so no history gives exactly 1 and a liked topic gives more.
    """
    rows = {rid: i for i, rid in enumerate(recipient_ids)}
    topics = {t: j for j, t in enumerate(topic_names)}
    clicks = np.zeros((len(recipient_ids), len(topic_names)))
    sends = np.zeros_like(clicks)
    for recipient_id, topic, kind, count in queries.recipient_topic_counts(
            session, list(recipient_ids), ["sent", "click"], now - timedelta(days=AFFINITY_DAYS)):
        j = topics.get(topic)
        if j is not None:
            (clicks if kind == "click" else sends)[rows[recipient_id], j] += count
    sends = np.maximum(sends, clicks)
    rate = (clicks.sum(axis=1, keepdims=True) + 0.1) / (sends.sum(axis=1, keepdims=True) + 1.0)
    return np.asarray((clicks + rate) / (sends + 1.0) / rate)


def already_sent(session: Session, recipient_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
    """(recipients x items) True where that item was already sent to that recipient."""
    rows = {rid: i for i, rid in enumerate(recipient_ids)}
    cols = {iid: j for j, iid in enumerate(item_ids)}
    seen = np.zeros((len(recipient_ids), len(item_ids)), dtype=bool)
    for recipient_id, item_id in queries.sent_pairs(session, recipient_ids, item_ids):
        seen[rows[recipient_id], cols[item_id]] = True
    return seen
