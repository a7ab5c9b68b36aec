"""Persona segments in the store: builds, their segments and versioned memberships."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.store.db import upsert
from engine.store.tables import Segment, SegmentBuild, SegmentMember

CHUNK = 5000


@dataclass(frozen=True)
class SegmentProfile:
    name: str
    size: int
    profile: dict[str, Any]


def save_build(session: Session, *, built_at: datetime, method: str, k: int, silhouette: float | None,
               min_size: int, features: Sequence[str], segments: Sequence[SegmentProfile],
               recipient_ids: Sequence[str], labels: Sequence[str]) -> int:
    """Store one build with its segments and every membership; returns its version."""
    build = SegmentBuild(built_at=built_at, method=method, k=k, silhouette=silhouette,
                         recipients=len(recipient_ids), min_size=min_size, features=list(features))
    session.add(build)
    session.flush()
    assert build.version is not None
    for segment in segments:
        session.add(Segment(version=build.version, name=segment.name, size=segment.size, profile=segment.profile))
    rows = [{"version": build.version, "recipient_id": r, "segment": s}
            for r, s in zip(recipient_ids, labels, strict=True)]
    for start in range(0, len(rows), CHUNK):
        upsert(session, SegmentMember, rows[start:start + CHUNK], ["version", "recipient_id"])
    return build.version


def latest_build(session: Session, version: int | None = None) -> SegmentBuild | None:
    """The build ``version``, or the latest one."""
    if version is not None:
        return session.get(SegmentBuild, version)
    return session.exec(select(SegmentBuild).order_by(col(SegmentBuild.version).desc())).first()


def build_segments(session: Session, version: int) -> list[Segment]:
    return list(session.exec(select(Segment).where(Segment.version == version)
                             .order_by(col(Segment.size).desc(), col(Segment.name))).all())


def recipient_segments(session: Session, recipient_id: str) -> list[dict[str, Any]]:
    """Every build's segment for one recipient (for privacy exports)."""
    rows = session.exec(select(SegmentMember.version, SegmentMember.segment)
                        .where(SegmentMember.recipient_id == recipient_id).order_by(col(SegmentMember.version))).all()
    return [{"version": version, "segment": segment} for version, segment in rows]


def delete_recipient(session: Session, recipient_id: str) -> int:
    result = session.execute(sa.delete(SegmentMember).where(col(SegmentMember.recipient_id) == recipient_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
