"""Columns for the rule language over recipients: fields, attributes and behavioural functions.

Everything is columnar. The recipients a rule runs over are a :class:`RecipientFrame` (ids in id
order, and the columns the rule names, read in one streamed query); each behavioural call is one
grouped query over the event log whose result is scattered onto the frame by position. A rule
with three behavioural calls costs three queries and a few vector operations, whatever the size
of the audience.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import Session

from engine.spec.rule_eval import DATE, Column, column_from_values, to_seconds
from engine.spec.rules import Call, Name, Rule
from engine.store import columnar
from engine.store.columnar import Aggregate, RecipientIds

_COUNTERS = {"clicks": "click", "opens": "open", "sends": "sent", "conversions": "conversion"}
AFFINITY_DAYS = 90


class UnknownSegment(LookupError):
    """A rule names a segment that the latest build does not have."""

    def __init__(self, name: str, column: int, known: Sequence[str]) -> None:
        self.name = name
        self.column = column
        if known:
            self.problem = f"no segment {name!r} in the latest build; expected one of {', '.join(known)}"
        else:
            self.problem = f"no segment {name!r}: no segments are built yet (run `kairos segments build`)"
        super().__init__(self.problem)


@dataclass(frozen=True)
class RecipientFrame:
    """Every recipient, in id order, with the columns that were asked for.

    The ids are packed (:class:`engine.store.columnar.RecipientIds`): a recipient's position is
    found by bisection, with no index beside them.
    """

    ids: RecipientIds
    columns: dict[str, Column]

    def __post_init__(self) -> None:
        if not self.ids.increasing():
            raise ValueError("recipient ids must be unique and in code point order")

    def __len__(self) -> int:
        return len(self.ids)

    def scatter(self, aggregate: Aggregate, fill: float) -> tuple[np.ndarray, np.ndarray]:
        """Values of ``aggregate`` placed at their recipients' positions; (values, present)."""
        values = np.full(len(self.ids), fill, dtype=float)
        present = np.zeros(len(self.ids), dtype=bool)
        at = self.positions(aggregate.recipient_ids)
        known = at >= 0
        values[at[known]] = aggregate.values[known]
        present[at[known]] = True
        return values, present

    def positions(self, recipient_ids: Sequence[str]) -> np.ndarray:
        """Position of each id in the frame, -1 for ids that are not recipients."""
        return self.ids.positions(recipient_ids)


def rule_columns(rule: Rule | None) -> tuple[list[str], list[str]]:
    """The recipient fields and attribute names a rule reads."""
    fields: list[str] = []
    attributes: list[str] = []
    for dotted in sorted(rule.names()) if rule is not None else []:
        path = dotted.split(".")
        (attributes if path[0] == "attributes" else fields).append(path[-1])
    return fields, attributes


def load_frame(session: Session, fields: Sequence[str] = (), attributes: Sequence[str] = ()) -> RecipientFrame:
    """Every recipient with the given fields and attributes as :class:`Column`\\ s."""
    read = columnar.read_recipient_columns(session, list(dict.fromkeys(fields)), list(dict.fromkeys(attributes)))
    columns = {name: column_from_values(values) for name, values in read.columns.items()}
    return RecipientFrame(read.ids, columns)


class RecipientColumns:
    """Resolves the names and calls of a rule to columns aligned with ``frame``.

    :param tiers: gives each recipient's propensity tier (``high``, ``medium``, ``low``) when a
        rule calls ``tier()``; computed only then, since it needs predicted probabilities.
    """

    def __init__(self, session: Session, frame: RecipientFrame, now: datetime,
                 tiers: Callable[[], np.ndarray] | None = None) -> None:
        self.session = session
        self.frame = frame
        self.now = now
        self.tiers = tiers
        self._cache: dict[object, Column] = {}

    def __call__(self, node: Name | Call) -> Column:
        key = node.path if isinstance(node, Name) else (node.function, node.args)
        if key not in self._cache:
            self._cache[key] = self._name(node) if isinstance(node, Name) else self._call(node)
        return self._cache[key]

    def _name(self, node: Name) -> Column:
        name = node.dotted if node.path[0] == "attributes" else node.path[0]
        return self.frame.columns[name]

    def _present(self) -> np.ndarray:
        return np.ones(len(self.frame), dtype=bool)

    def _counts(self, kind: str, days: int) -> Column:
        values, _ = self.frame.scatter(columnar.event_counts(self.session, kind, self.now - timedelta(days=days)), 0.0)
        return Column(values, self._present())

    def _call(self, node: Call) -> Column:
        function, args = node.function, node.args
        if function in _COUNTERS:
            return self._counts(_COUNTERS[function], int(args[0]))
        if function == "events":
            return self._counts(str(args[0]), int(args[1]))
        if function == "days_since":
            last, present = self.frame.scatter(columnar.last_event_seconds(self.session, str(args[0])), np.nan)
            return Column((to_seconds(self.now) - last) / 86400.0, present)
        if function == "topic_affinity":
            return self._topic_affinity(str(args[0]))
        if function == "segment":
            return self._segment(node)
        if function == "tier":
            if self.tiers is None:
                raise AssertionError("tier() passed validation but the audience has no scores")
            return Column(self.tiers() == str(args[0]), self._present())
        if function == "now":
            return Column(np.full(len(self.frame), to_seconds(self.now)), self._present(), DATE)
        raise AssertionError(f"function {function} passed validation but has no implementation")

    def _topic_affinity(self, topic: str) -> Column:
        """Smoothed click rate on ``topic`` over the last 90 days: (clicks + 1) / (sends + 2).

        0.5 for no history; above 0.5 the recipient clicks that topic more often than not.
        """
        counts = columnar.topic_counts(self.session, ["sent", "click"], self.now - timedelta(days=AFFINITY_DAYS),
                                       topic)
        at = self.frame.positions(counts.recipient_ids)
        is_click = np.array([k == "click" for k in counts.kinds], dtype=bool)
        known = at >= 0
        clicks = np.zeros(len(self.frame))
        sends = np.zeros(len(self.frame))
        np.add.at(clicks, at[known & is_click], counts.counts[known & is_click])
        np.add.at(sends, at[known & ~is_click], counts.counts[known & ~is_click])
        return Column((clicks + 1) / (np.maximum(sends, clicks) + 2), self._present())

    def _segment(self, node: Call) -> Column:
        name = str(node.args[0])
        version = columnar.latest_segment_version(self.session)
        known = columnar.segment_names(self.session, version) if version is not None else []
        if name not in known:
            raise UnknownSegment(name, node.arg_columns[0] if node.arg_columns else node.column, known)
        assert version is not None
        _, present = self.frame.scatter(columnar.segment_members(self.session, version, name), 0.0)
        return Column(present, self._present())
