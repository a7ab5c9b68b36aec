"""Latent taste segments: a mixture model of who clicks which topics, fit on the event log.

A recipient's own clicks are few (most impressions go unopened), so their topic affinity alone
is mostly noise. People with similar tastes, though, leave similar traces — a few clicks here,
an interest declared at sign-up there — and pooling them recovers tastes no one person's log
shows. :func:`fit_segments` fits a latent class model by EM:

- each recipient belongs to one of K segments (prior weights pi);
- in segment c, each opened impression of topic t is clicked with probability theta[c, t]
  (binomial in the recipient's impressions in opened messages and clicks per topic, smoothed
  toward the topic's population rate: an unopened message says nothing about its items, an
  opened one that drew no click says a lot);
- in segment c, each categorical attribute takes its values with probabilities phi[c, a, v]
  (missing values say nothing);
- in segment c, each item a recipient read outside any message (a page view, say) is of topic t
  with probability psi[c, t] (multinomial, smoothed toward everyone's shares). Only when the log
  has such reads: someone who browses the site tells their taste without a single click.

K is chosen by AIC among :data:`SEGMENT_COUNTS` (the segments are for prediction, and AIC
approximates held-out likelihood; BIC's heavier penalty merges real segments of a few thousand
recipients), each K fit from a few seeded starts. A recipient's
posterior over segments (from their own counts and attributes, at any moment) gives their
expected click rate on each topic, sum_c P(c | recipient) theta[c, t]: the ``segment_*`` cross
features of :mod:`engine.features.pairs`. The fitted parameters are stored with the model's
feature schema, so sending computes exactly the posterior that training did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

SEGMENT_COUNTS = (1, 2, 3, 4, 6, 8, 10)
RESTARTS = 3
ITERATIONS = 100
MIN_ITERATIONS = 10
TOLERANCE = 1e-6
RATE_PRIOR = 20.0       # pseudo-impressions of a segment's topic at the topic's population rate
LEVEL_PRIOR = 1.0       # pseudo-count of every attribute level in every segment
VIEW_PRIOR = 20.0       # pseudo-reads of a segment at everyone's topic shares
MIN_RECIPIENTS = 50     # fewer than this with any click: no segments (one would be all)
ITEM_PRIOR = 20.0       # pseudo-impressions of an item at its segment's rate on the item's topic


@dataclass(frozen=True)
class TasteSegments:
    """Fitted segments. ``levels[a]`` are the codes 0..len-1 of attribute ``attributes[a]`` as the
    recipient encoding numbers them; ``level_probability[a]`` is (segments x levels)."""

    weights: np.ndarray                          # (segments,)
    topic_rate: np.ndarray                       # (segments x topics)
    topics: tuple[str, ...]
    attributes: tuple[str, ...]
    level_probability: tuple[np.ndarray, ...]
    view_share: np.ndarray | None = None         # (segments x topics), when fit on reads
    item_ids: tuple[str, ...] = ()               # the items of item_rate's columns
    item_rate: np.ndarray | None = None          # (segments x item_ids) click rate of each item (with_item_rates)

    def __len__(self) -> int:
        return len(self.weights)

    def posterior(self, impressions: np.ndarray, clicks: np.ndarray, attribute_codes: np.ndarray,
                  views: np.ndarray | None = None) -> np.ndarray:
        """(recipients x segments) P(segment | counts, attributes, reads).

        :param impressions: (recipients x self.topics) impressions per topic; ``clicks`` the same,
            and ``views`` (items read outside any message; ignored by segments fit without any).
        :param attribute_codes: (recipients x self.attributes) level codes, NaN when missing.
        """
        log_like = _log_likelihood(impressions, clicks, attribute_codes, self.topic_rate, self.level_probability,
                                   views, self.view_share)
        return _normalize(log_like + np.log(self.weights)[None, :])[0]

    def population_rates(self) -> np.ndarray:
        """(topics,) the click rate of each topic over everyone (the segments weighted by size)."""
        return np.asarray(self.weights @ self.topic_rate)

    def to_json(self) -> dict[str, Any]:
        views = {} if self.view_share is None else {"view_share": self.view_share.tolist()}
        items = {} if self.item_rate is None else {"item_ids": list(self.item_ids),
                                                   "item_rate": self.item_rate.tolist()}
        return {"weights": self.weights.tolist(), "topic_rate": self.topic_rate.tolist(), "topics": list(self.topics),
                "attributes": list(self.attributes), "levels": [p.tolist() for p in self.level_probability],
                **views, **items}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TasteSegments:
        weights = np.asarray(data["weights"], dtype=np.float64)
        rates = np.asarray(data["topic_rate"], dtype=np.float64).reshape(len(weights), len(data["topics"]))
        levels = tuple(np.asarray(p, dtype=np.float64).reshape(len(weights), -1) for p in data["levels"])
        views = None if data.get("view_share") is None else np.asarray(
            data["view_share"], dtype=np.float64).reshape(rates.shape)
        item_ids = tuple(str(i) for i in data.get("item_ids", ()))
        item_rate = None if data.get("item_rate") is None else np.asarray(
            data["item_rate"], dtype=np.float64).reshape(len(weights), len(item_ids))
        if len(levels) != len(data["attributes"]) or not np.all(weights > 0) or not np.all((rates > 0) & (rates < 1)) \
                or (views is not None and not np.all(views > 0)) \
                or (item_rate is not None and not np.all((item_rate > 0) & (item_rate < 1))):
            raise ValueError("the stored taste segments are inconsistent")
        return cls(weights, rates, tuple(data["topics"]), tuple(data["attributes"]), levels, views, item_ids,
                   item_rate)


def _log_likelihood(impressions: np.ndarray, clicks: np.ndarray, attribute_codes: np.ndarray,
                    topic_rate: np.ndarray, level_probability: Sequence[np.ndarray], views: np.ndarray | None,
                    view_share: np.ndarray | None) -> np.ndarray:
    """(recipients x segments) log P(counts, attributes, reads | segment)."""
    misses = np.maximum(impressions - clicks, 0.0)
    log_like = clicks @ np.log(topic_rate).T + misses @ np.log1p(-topic_rate).T
    if views is not None and view_share is not None:
        log_like += views @ np.log(view_share).T
    for a, probability in enumerate(level_probability):
        code = attribute_codes[:, a]
        known = np.isfinite(code) & (code >= 0) & (code < probability.shape[1])
        log_like[known] += np.log(probability[:, code[known].astype(np.int64)]).T
    return np.asarray(log_like)


def _normalize(log_joint: np.ndarray) -> tuple[np.ndarray, float]:
    """Responsibilities from log joint probabilities, and the total log likelihood."""
    top = log_joint.max(axis=1, keepdims=True)
    weights = np.exp(log_joint - top)
    total = weights.sum(axis=1, keepdims=True)
    return weights / total, float((np.log(total) + top).sum())


Parameters = tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], np.ndarray | None]


def _maximize(responsibility: np.ndarray, impressions: np.ndarray, clicks: np.ndarray, attribute_codes: np.ndarray,
              levels: Sequence[int], base_rate: np.ndarray, views: np.ndarray | None) -> Parameters:
    size = responsibility.sum(axis=0)
    weights = (size + 1.0) / (size.sum() + len(size))
    rate = (responsibility.T @ clicks + RATE_PRIOR * base_rate[None, :]) / (responsibility.T @ impressions + RATE_PRIOR)
    rate = np.clip(rate, 1e-6, 1.0 - 1e-6)
    probabilities = []
    for a, count in enumerate(levels):
        code = attribute_codes[:, a]
        known = np.isfinite(code) & (code >= 0) & (code < count)
        one_hot = np.zeros((len(code), count))
        one_hot[np.flatnonzero(known), code[known].astype(np.int64)] = 1.0
        counts = responsibility.T @ one_hot + LEVEL_PRIOR
        probabilities.append(counts / counts.sum(axis=1, keepdims=True))
    share = None
    if views is not None:
        everyone = (views.sum(axis=0) + 1.0) / (views.sum() + views.shape[1])
        read = responsibility.T @ views + VIEW_PRIOR * everyone[None, :]
        share = read / read.sum(axis=1, keepdims=True)
    return weights, rate, tuple(probabilities), share


def _fit(k: int, impressions: np.ndarray, clicks: np.ndarray, attribute_codes: np.ndarray, levels: Sequence[int],
         base_rate: np.ndarray, views: np.ndarray | None, rng: np.random.Generator) -> tuple[float, Parameters]:
    # Each segment starts from one recipient who clicked something (a near-uniform start would sit
    # on the symmetric saddle point, where EM barely moves and stops at once).
    clicked = np.flatnonzero(clicks.sum(axis=1) > 0)
    seeds = rng.choice(clicked, size=k, replace=False)
    responsibility = np.full((len(impressions), k), 1e-3 / k)
    responsibility[seeds, np.arange(k)] = 1.0
    params = _maximize(responsibility, impressions, clicks, attribute_codes, levels, base_rate, views)
    previous = -np.inf
    log_like = previous
    for iteration in range(ITERATIONS):
        weights, rate, probabilities, share = params
        joint = _log_likelihood(impressions, clicks, attribute_codes, rate, probabilities, views, share)
        responsibility, log_like = _normalize(joint + np.log(weights)[None, :])
        params = _maximize(responsibility, impressions, clicks, attribute_codes, levels, base_rate, views)
        if iteration >= MIN_ITERATIONS and log_like - previous < TOLERANCE * abs(log_like):
            break
        previous = log_like
    return log_like, params


def fit_segments(impressions: np.ndarray, clicks: np.ndarray, topics: Sequence[str], attribute_codes: np.ndarray,
                 attributes: Sequence[str], levels: Sequence[int], rng: np.random.Generator,
                 views: np.ndarray | None = None) -> TasteSegments | None:
    """Fit segments on recipients' topic impressions and clicks, their categorical attributes and
    (when any recipient has some) the topics of what they read outside any message.

    :param attribute_codes: (recipients x attributes) level codes (NaN when missing); ``levels``
        the number of levels of each.
    :returns: the AIC-best segments, or None when too few recipients clicked anything.
    """
    impressions = np.asarray(impressions, dtype=np.float64)
    clicks = np.minimum(np.asarray(clicks, dtype=np.float64), impressions)
    if int((clicks.sum(axis=1) > 0).sum()) < MIN_RECIPIENTS or impressions.shape[1] == 0:
        return None
    read = None if views is None or not np.any(views > 0) else np.asarray(views, dtype=np.float64)
    base_rate = (clicks.sum(axis=0) + 1.0) / (impressions.sum(axis=0) + 2.0)
    n = len(impressions)
    per_segment = (impressions.shape[1] + sum(max(count - 1, 0) for count in levels) + 1
                   + (impressions.shape[1] - 1 if read is not None else 0))
    best: tuple[float, Parameters] | None = None
    for k in SEGMENT_COUNTS:
        if k > 1 and n < MIN_RECIPIENTS * k:
            break
        fitted = max((_fit(k, impressions, clicks, attribute_codes, levels, base_rate, read, rng)
                      for _ in range(RESTARTS if k > 1 else 1)), key=lambda fit: fit[0])
        aic = -2.0 * fitted[0] + 2.0 * (k * per_segment - 1)
        if best is None or aic < best[0]:
            best = (aic, fitted[1])
    assert best is not None
    weights, rate, probabilities, share = best[1]
    return TasteSegments(weights, rate, tuple(topics), tuple(attributes), probabilities, share)


def with_item_rates(segments: TasteSegments, posterior: np.ndarray, opened: tuple[np.ndarray, np.ndarray],
                    clicked: tuple[np.ndarray, np.ndarray], item_ids: Sequence[str], item_topics: Sequence[str | None]
                    ) -> TasteSegments:
    """``segments`` with each segment's click rate on each item of ``item_ids``: its clicks over its
    impressions in opened messages, each recipient counting for each segment by their
    ``posterior`` (recipients x segments), smoothed toward the segment's rate on the item's topic
    with :data:`ITEM_PRIOR` pseudo-impressions. Items of a topic the segments were not fit on are
    left out (they are scored by topic, as before).

    Topics say much of a taste but not all of it: two stories of the same topic draw different
    clicks from the same people, and not in the same way from every segment.

    :param opened: (recipient row of ``posterior``, index into ``item_ids``) of each impression in
        an opened message; ``clicked`` the same of each click.
    """
    topic = np.array([segments.topics.index(t) if t in segments.topics else -1 for t in item_topics], dtype=np.int64)
    keep = np.flatnonzero(topic >= 0)
    if len(keep) == 0:
        return segments
    column = np.full(len(item_ids), -1, dtype=np.int64)
    column[keep] = np.arange(len(keep))

    def per_segment(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        to = column[items]
        rows, to = rows[to >= 0], to[to >= 0]
        return np.stack([np.bincount(to, weights=posterior[rows, c], minlength=len(keep))
                         for c in range(posterior.shape[1])])

    prior = segments.topic_rate[:, topic[keep]]
    rate = (per_segment(*clicked) + ITEM_PRIOR * prior) / (per_segment(*opened) + ITEM_PRIOR)
    return replace(segments, item_ids=tuple(item_ids[int(i)] for i in keep), item_rate=np.clip(rate, 1e-6, 1.0 - 1e-6))


__all__ = ["SEGMENT_COUNTS", "TasteSegments", "fit_segments", "with_item_rates"]
