"""Ranker versions in the store: save, promote, load (cached per process by model id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from engine.errors import ModelError
from engine.learn.ranker import LightGBMRanker
from engine.store import queries

RANKER = "ranker"
_LOADED: dict[tuple[str, int], LightGBMRanker] = {}


def save_ranker(session: Session, campaign: str, ranker: LightGBMRanker, metrics: dict[str, Any],
                now: datetime) -> int:
    """Store a trained ranker (not promoted); returns its model id."""
    return queries.save_model_version(session, RANKER, campaign, ranker.version, metrics, ranker.to_bytes(), now)


def load_ranker(session: Session, model_id: int) -> LightGBMRanker:
    """The ranker stored as ``model_id``; :class:`ModelError` if it is missing or damaged."""
    key = (str(session.get_bind().engine.url), model_id)
    if key not in _LOADED:
        row = queries.model_version(session, model_id=model_id)
        if row is None or row.artifact is None:
            raise ModelError(f"model {model_id}: no stored artifact")
        _LOADED[key] = LightGBMRanker.from_bytes(row.artifact, where=f"model {row.version} (id {model_id})")
    return _LOADED[key]


def promoted_ranker(session: Session, campaign: str) -> tuple[int, LightGBMRanker] | None:
    """The promoted ranker of ``campaign`` and its id, or None (then popularity decides)."""
    model_id = queries.promoted_model_id(session, RANKER, campaign)
    return None if model_id is None else (model_id, load_ranker(session, model_id))


def ranker_by_version(session: Session, campaign: str, version: str) -> tuple[int, LightGBMRanker] | None:
    row = queries.model_version(session, kind=RANKER, campaign=campaign, version=version)
    if row is None or row.id is None:
        return None
    return row.id, load_ranker(session, row.id)
