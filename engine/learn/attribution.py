"""Last-touch attribution: which earlier touch (a send, an impression) an event is credited to.

An event is credited to the latest touch with the same key (a recipient, or a recipient and an
item) at or before it, if it came within the window; otherwise to nothing. Vectorized: one sort
and one binary search for all events, whatever their number.
"""

from __future__ import annotations

import numpy as np


def last_touch(touch_key: np.ndarray, touch_ts: np.ndarray, event_key: np.ndarray, event_ts: np.ndarray,
               window_seconds: float) -> np.ndarray:
    """For each event, the index of the touch it is credited to, or -1.

    :param touch_key: integer key of each touch (e.g. a recipient code); ``event_key`` the same
        for each event. Times are epoch seconds.
    """
    credited = np.full(len(event_key), -1, dtype=np.int64)
    if len(touch_key) == 0 or len(event_key) == 0:
        return credited
    _, inverse = np.unique(np.concatenate([touch_key, event_key]), return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    touch_rank, event_rank = inverse[:len(touch_key)], inverse[len(touch_key):]
    start = np.floor(min(touch_ts.min(), event_ts.min()))
    span = int(np.ceil(max(touch_ts.max(), event_ts.max()) - start)) + 2
    touch_code = touch_rank * span + np.floor(touch_ts - start).astype(np.int64)
    event_code = event_rank * span + np.floor(event_ts - start).astype(np.int64)
    order = np.argsort(touch_code, kind="stable")
    position = np.searchsorted(touch_code[order], event_code, side="right") - 1
    candidate = order[position.clip(0)]
    elapsed = event_ts - touch_ts[candidate]
    found = (position >= 0) & (touch_rank[candidate] == event_rank) & (elapsed > -1.0) & (elapsed <= window_seconds)
    credited[found] = candidate[found]
    return credited
