"""The event log as numpy columns: the one input every feature, label and outcome is computed from.

Strings (recipients, items, topics, channels, campaigns) become integer codes into vocabularies
kept beside the columns, and times become epoch seconds, so everything after loading is array
arithmetic. The same columns come from the store (:func:`load_events`) or straight from the
simulator (:meth:`EventColumns.from_columns`), which is how tests and benchmarks skip SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from engine.spec.model import NOT_GOALS
from engine.store import queries

CHANNELS = ("email", "push")
DAY = 86400.0


def is_none(array: np.ndarray) -> np.ndarray:
    """True where an object array holds None."""
    return np.asarray(np.equal(array, None))  # type: ignore[call-overload]


def codes(values: Sequence[Any] | np.ndarray, vocabulary: Sequence[str] | np.ndarray) -> np.ndarray:
    """The index of each value in ``vocabulary`` (-1 when absent or None), vectorized."""
    vocab = np.asarray([str(v) for v in vocabulary], dtype=str) if len(vocabulary) else np.array([], dtype=str)
    if len(values) == 0 or len(vocab) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    array = np.asarray(values, dtype=object)
    missing = is_none(array)
    text = np.where(missing, "", array).astype(str)
    order = np.argsort(vocab)
    position = np.searchsorted(vocab[order], text).clip(0, len(vocab) - 1)
    found = (vocab[order][position] == text) & ~missing
    return np.where(found, order[position], -1).astype(np.int64)


def vocabulary(values: Sequence[Any]) -> tuple[str, ...]:
    """The distinct non-None values, sorted."""
    array = np.asarray(values, dtype=object)
    present = array[~is_none(array)]
    return tuple(str(v) for v in np.unique(present.astype(str))) if len(present) else ()


@dataclass(frozen=True)
class EventColumns:
    """Events as aligned arrays. Codes index the vocabularies; -1 means "none" or "not known".

    ``recipient`` indexes ``recipient_ids`` (the recipients the caller asked about, in the
    caller's order); ``message`` groups the per-slot `sent` events of one message (-1 on other
    events): the message id where there is one, else (imported history) recipient, campaign and time.
    """

    recipient: np.ndarray
    kind: np.ndarray
    item: np.ndarray
    topic: np.ndarray
    channel: np.ndarray
    campaign: np.ndarray
    variant: np.ndarray
    position: np.ndarray
    propensity: np.ndarray
    message: np.ndarray
    ts: np.ndarray
    recipient_ids: tuple[str, ...]
    kinds: tuple[str, ...]
    item_ids: tuple[str, ...]
    topics: tuple[str, ...]
    campaigns: tuple[str, ...]
    variants: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def kind_code(self, kind: str) -> int:
        return self.kinds.index(kind) if kind in self.kinds else -2

    def is_kind(self, *kinds: str) -> np.ndarray:
        return np.isin(self.kind, [self.kind_code(k) for k in kinds])

    def select(self, mask: np.ndarray) -> EventColumns:
        """The events where ``mask`` holds, with the same vocabularies."""
        arrays = {name: getattr(self, name)[mask] for name in _ARRAYS}
        return EventColumns(**arrays, **{name: getattr(self, name) for name in _VOCABULARIES})

    def between(self, since: float, until: float) -> EventColumns:
        return self.select((self.ts >= since) & (self.ts < until))

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], recipient_ids: Sequence[str]) -> EventColumns:
        """Build from columns named as :data:`engine.store.queries.EVENT_COLUMN_NAMES` (``ts`` as
        aware datetimes or epoch seconds, or an array of epoch seconds)."""
        count = len(columns["recipient_id"])
        ts_values = columns["ts"]
        ts = (ts_values.astype(np.float64) if isinstance(ts_values, np.ndarray) else
              np.fromiter((t.timestamp() if isinstance(t, datetime) else float(t) for t in ts_values),
                          dtype=np.float64, count=count))
        kinds = vocabulary(columns["type"])
        items = vocabulary(columns.get("item_id", [None] * count))
        topics = vocabulary(columns.get("topic", [None] * count))
        campaigns = vocabulary(columns.get("campaign", [None] * count))
        variants = vocabulary(columns.get("variant", [None] * count))
        recipient = codes(columns["recipient_id"], recipient_ids)
        kind = codes(columns["type"], kinds)
        campaign = codes(columns.get("campaign", [None] * count), campaigns)
        position = _numbers(columns.get("position", [None] * count), -1.0).astype(np.int64)
        message_ids = _numbers(columns.get("message_id", [None] * count), -1.0).astype(np.int64)
        sent = kind == (kinds.index("sent") if "sent" in kinds else -2)
        key = np.stack([recipient, message_ids, np.where(message_ids < 0, campaign, -1),
                        np.where(message_ids < 0, np.round(ts).astype(np.int64), 0)], axis=1)
        message = np.full(count, -1, dtype=np.int64)
        if sent.any():
            message[sent] = np.unique(key[sent], axis=0, return_inverse=True)[1].reshape(-1)
        return cls(
            recipient=recipient, kind=kind,
            item=codes(columns.get("item_id", [None] * count), items),
            topic=codes(columns.get("topic", [None] * count), topics),
            channel=codes(columns.get("channel", [None] * count), CHANNELS),
            campaign=campaign, variant=codes(columns.get("variant", [None] * count), variants),
            position=position, propensity=_numbers(columns.get("propensity", [None] * count), np.nan),
            message=message, ts=ts, recipient_ids=tuple(recipient_ids), kinds=kinds, item_ids=items,
            topics=topics, campaigns=campaigns, variants=variants,
        )


def own_doings(log: EventColumns) -> np.ndarray:
    """True on the events a recipient made outside any message: a visit, an app session, a page
    read, any custom event ingested without a campaign. They show when the recipient is about, and
    (with an item) what they read, as no message prompted them. Opens and clicks have their own
    rules, and the kinds in :data:`~engine.spec.model.NOT_GOALS` say what happened to a message."""
    return np.asarray((log.campaign < 0) & ~log.is_kind("open", "click", *NOT_GOALS))


_ARRAYS = ("recipient", "kind", "item", "topic", "channel", "campaign", "variant", "position", "propensity",
           "message", "ts")
_VOCABULARIES = ("recipient_ids", "kinds", "item_ids", "topics", "campaigns", "variants")


def _numbers(values: Sequence[Any], missing: float) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    return np.where(is_none(array), missing, array).astype(np.float64)


def load_events(session: Session, recipient_ids: Sequence[str] | None, since: datetime, until: datetime,
                types: Sequence[str] | None = None) -> EventColumns:
    """Events in [since, until) of the given recipients (or of everyone: then ``recipient_ids``
    of the result are every recipient that has an event, sorted)."""
    columns = queries.event_columns(session, since=since, until=until, types=types, recipient_ids=recipient_ids)
    ids = list(recipient_ids) if recipient_ids is not None else list(vocabulary(columns["recipient_id"]))
    return EventColumns.from_columns(columns, ids)
