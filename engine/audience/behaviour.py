"""Columns for the rule language over recipients: fields, attributes and behavioural functions.

Each function of :data:`engine.spec.rules.AUDIENCE_FUNCTIONS` becomes one grouped query over the
event log and one numpy vector aligned with the recipients; a rule with three behavioural calls
costs three queries, whatever the audience size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.spec.rules import Call, Column, Name, column_from_values
from engine.store import queries
from engine.store.queries import RecipientRow

_COUNTERS = {"clicks": "click", "opens": "open", "sends": "sent", "conversions": "conversion"}


class RecipientColumns:
    """Resolves names and calls of a rule to columns aligned with ``recipients``."""

    def __init__(self, session: Session, recipients: Sequence[RecipientRow], now: datetime) -> None:
        self.session = session
        self.recipients = recipients
        self.now = now
        self.index = {r.id: i for i, r in enumerate(recipients)}
        self._cache: dict[object, Column] = {}

    def __call__(self, node: Name | Call) -> Column:
        key = node.path if isinstance(node, Name) else (node.function, node.args)
        if key not in self._cache:
            self._cache[key] = self._name(node) if isinstance(node, Name) else self._call(node)
        return self._cache[key]

    def _name(self, node: Name) -> Column:
        if node.path[0] == "attributes":
            attribute = node.path[1]
            return column_from_values([r.attributes.get(attribute) for r in self.recipients])
        return column_from_values([getattr(r, node.path[0]) for r in self.recipients])

    def _counts(self, kind: str, days: int) -> Column:
        since = self.now - timedelta(days=days)
        counts = queries.recipient_event_counts(self.session, [kind], since)
        values = np.zeros(len(self.recipients))
        for (recipient_id, _), count in counts.items():
            position = self.index.get(recipient_id)
            if position is not None:
                values[position] = count
        return Column(values, np.ones(len(self.recipients), dtype=bool))

    def _call(self, node: Call) -> Column:
        if node.function in _COUNTERS:
            return self._counts(_COUNTERS[node.function], int(node.args[0]))
        if node.function == "events":
            return self._counts(str(node.args[0]), int(node.args[1]))
        if node.function == "days_since":
            last = queries.last_event_times(self.session, str(node.args[0]))
            values = np.full(len(self.recipients), np.nan)
            for recipient_id, moment in last.items():
                position = self.index.get(recipient_id)
                if position is not None:
                    values[position] = (self.now - moment).total_seconds() / 86400
            return Column(values, ~np.isnan(values))
        if node.function == "topic_affinity":
            return self._topic_affinity(str(node.args[0]))
        raise AssertionError(f"function {node.function} passed validation but has no implementation")

    def _topic_affinity(self, topic: str) -> Column:
        """Smoothed click rate on ``topic`` relative to the recipient's overall click rate.

        (clicks on topic + 1) / (sends of topic + 2), over the last 90 days: 0.5 for no history.
        """
        since = self.now - timedelta(days=90)
        rows = queries.recipient_topic_counts(self.session, [r.id for r in self.recipients],
                                              ["sent", "click"], since)
        clicks = np.zeros(len(self.recipients))
        sends = np.zeros(len(self.recipients))
        for recipient_id, row_topic, kind, count in rows:
            position = self.index.get(recipient_id)
            if position is None or row_topic != topic:
                continue
            (clicks if kind == "click" else sends)[position] += count
        return Column((clicks + 1) / (np.maximum(sends, clicks) + 2), np.ones(len(self.recipients), dtype=bool))
