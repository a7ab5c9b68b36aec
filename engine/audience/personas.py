"""Personas: recipients clustered on what they do, named by what sets each cluster apart.

:func:`build_personas` reads behavioural features for every recipient (their relative appetite
for each topic, how often they click and open, how recently they clicked), standardizes them,
clusters them with k-means for each ``k`` in a range and keeps the ``k`` with the best silhouette.
Clusters smaller than ``min_size`` are merged into their nearest neighbour. Each cluster is named
after its most distinctive features (the largest mean z-scores: ``sports-politics``,
``frequent-clickers``, ``lapsed``), and :func:`store_personas` writes a new version of the
memberships, so ``segment('sports-politics')`` in a rule always means the latest build.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sqlmodel import Session

from engine.audience.behaviour import RecipientFrame, load_frame
from engine.spec.rule_eval import to_seconds
from engine.store import columnar
from engine.store.segments import SegmentProfile, latest_build, save_build

HISTORY_DAYS = 180
RECENCY_CAP_DAYS = 180.0
FIT_SAMPLE = 50_000        # k-means is fitted on at most this many recipients, then applied to all
SILHOUETTE_SAMPLE = 4_000
DISTINCTIVE = 0.4          # a feature names a cluster when its mean z-score is at least this


@dataclass(frozen=True)
class Features:
    """Behavioural features, one row per recipient of ``frame``; ``labels`` name the columns."""

    frame: RecipientFrame
    values: np.ndarray
    labels: tuple[str, ...]
    names: tuple[str, ...]   # what a high value of each column says about someone


def behavioural_features(session: Session, now: datetime, frame: RecipientFrame | None = None) -> Features:
    """Per recipient: log relative affinity per topic, log click and open rates, days since a click."""
    frame = frame or load_frame(session)
    since = now - timedelta(days=HISTORY_DAYS)
    counts = columnar.topic_counts(session, ["sent", "click"], since)
    topics = sorted(set(counts.topics))
    column = {t: j for j, t in enumerate(topics)}
    rows = frame.positions(counts.recipient_ids)
    cols = np.fromiter((column[t] for t in counts.topics), dtype=np.int64, count=len(counts.topics))
    is_click = np.array([k == "click" for k in counts.kinds], dtype=bool)
    known = rows >= 0
    sends = np.zeros((len(frame), len(topics)))
    clicks = np.zeros_like(sends)
    np.add.at(sends, (rows[known & ~is_click], cols[known & ~is_click]), counts.counts[known & ~is_click])
    np.add.at(clicks, (rows[known & is_click], cols[known & is_click]), counts.counts[known & is_click])
    sends = np.maximum(sends, clicks)
    rate = (clicks.sum(axis=1, keepdims=True) + 0.1) / (sends.sum(axis=1, keepdims=True) + 1.0)
    affinity = np.log((clicks + rate) / (sends + 1.0) / rate)

    messages, _ = frame.scatter(columnar.event_counts(session, "sent", since), 0.0)
    opens, _ = frame.scatter(columnar.event_counts(session, "open", since), 0.0)
    last_click, clicked = frame.scatter(columnar.last_event_seconds(session, "click"), np.nan)
    recency = np.where(clicked, np.minimum((to_seconds(now) - last_click) / 86400.0, RECENCY_CAP_DAYS),
                       RECENCY_CAP_DAYS)
    values = np.column_stack([
        affinity,
        np.log(rate[:, 0]),
        np.log((np.minimum(opens, messages) + 0.1) / (messages + 1.0)),
        recency,
    ]) if len(frame) else np.zeros((0, len(topics) + 3))
    labels = (*(f"affinity:{t}" for t in topics), "click_rate", "open_rate", "days_since_click")
    names = (*topics, "frequent-clickers", "frequent-openers", "lapsed")
    return Features(frame, values, labels, names)


@dataclass(frozen=True)
class Personas:
    """A clustering of every recipient: ``assignment`` indexes ``segments`` per recipient."""

    features: Features
    assignment: np.ndarray
    segments: tuple[SegmentProfile, ...]
    k: int
    silhouette: float | None
    min_size: int


def _standardize(values: np.ndarray) -> np.ndarray:
    spread = values.std(axis=0)
    return np.asarray((values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0))


def _fit(z: np.ndarray, k: int, seed: int) -> KMeans:
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)


def choose_k(z: np.ndarray, k_range: range, rng: np.random.Generator) -> tuple[KMeans, float | None]:
    """The k-means fit with the best silhouette over ``k_range`` (on a sample for large audiences)."""
    sample = z if len(z) <= FIT_SAMPLE else z[rng.choice(len(z), FIT_SAMPLE, replace=False)]
    seed = int(rng.integers(0, 2**31 - 1))
    best: tuple[KMeans, float | None] | None = None
    for k in k_range:
        if k >= len(sample):
            break
        model = _fit(sample, k, seed)
        if len(set(model.labels_.tolist())) < 2:
            continue
        score = float(silhouette_score(sample, model.labels_, sample_size=min(len(sample), SILHOUETTE_SAMPLE),
                                       random_state=seed))
        if best is None or best[1] is None or score > best[1]:
            best = (model, score)
    return best if best is not None else (_fit(sample, 1, seed), None)


def merge_small(z: np.ndarray, assignment: np.ndarray, min_size: int) -> np.ndarray:
    """Fold every cluster under ``min_size`` members into the nearest remaining one, smallest first."""
    assignment = assignment.copy()
    while True:
        clusters, sizes = np.unique(assignment, return_counts=True)
        if len(clusters) < 2 or sizes.min() >= min_size:
            return assignment
        small = clusters[sizes.argmin()]
        others = clusters[clusters != small]
        centroids = np.array([z[assignment == c].mean(axis=0) for c in others])
        members = assignment == small
        distance = ((z[members][:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        assignment[members] = others[distance.argmin(axis=1)]


def _name(mean_z: np.ndarray, names: tuple[str, ...], taken: set[str]) -> str:
    order = np.argsort(-mean_z, kind="stable")
    picked = [names[j] for j in order[:2] if mean_z[j] >= DISTINCTIVE]
    base = "-".join(picked) if picked else "typical"
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(name)
    return name


def build_personas(session: Session, now: datetime, rng: np.random.Generator, *, min_size: int = 50,
                   k_range: range = range(2, 9)) -> Personas:
    """Cluster every recipient on behavioural features (nothing is written; see :func:`store_personas`)."""
    features = behavioural_features(session, now)
    z = _standardize(features.values)
    if len(z) < 2:
        assignment = np.zeros(len(z), dtype=np.int64)
        silhouette = None
        k = 1
    else:
        model, silhouette = choose_k(z, k_range, rng)
        assignment = merge_small(z, model.predict(z).astype(np.int64), min_size)
        k = int(model.n_clusters)
    taken: set[str] = set()
    clusters, sizes = np.unique(assignment, return_counts=True)
    segments: list[SegmentProfile] = []
    relabel = np.zeros(int(clusters.max()) + 1 if len(clusters) else 1, dtype=np.int64)
    for index in np.argsort(-sizes, kind="stable"):
        cluster = clusters[index]
        members = assignment == cluster
        mean_z = z[members].mean(axis=0)
        profile = {label: {"z": round(float(mean_z[j]), 3), "mean": round(float(features.values[members, j].mean()), 4)}
                   for j, label in enumerate(features.labels)}
        relabel[cluster] = len(segments)
        segments.append(SegmentProfile(_name(mean_z, features.names, taken), int(sizes[index]), profile))
    return Personas(features, relabel[assignment], tuple(segments), k, silhouette, min_size)


def store_personas(session: Session, personas: Personas, now: datetime) -> int:
    """Write ``personas`` as a new build; returns its version."""
    labels = [personas.segments[i].name for i in personas.assignment]
    return save_build(session, built_at=now, method="kmeans", k=personas.k, silhouette=personas.silhouette,
                      min_size=personas.min_size, features=personas.features.labels, segments=personas.segments,
                      recipient_ids=personas.features.frame.ids, labels=labels)


def rebuild_if_due(session: Session, now: datetime, every: timedelta, rng: np.random.Generator, *,
                   min_size: int = 50, k_range: range = range(2, 9)) -> int | None:
    """Rebuild when the latest build is older than ``every`` (or there is none); the new version or None.

    This is what keeps segments current: the daemon calls it on its schedule, and
    ``kairos segments build --if-due`` does the same from cron.
    """
    latest = latest_build(session)
    if latest is not None and now - latest.built_at < every:
        return None
    return store_personas(session, build_personas(session, now, rng, min_size=min_size, k_range=k_range), now)
