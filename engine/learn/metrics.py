"""Ranking and classification quality, vectorized over all groups at once."""

from __future__ import annotations

import numpy as np


def _rank_in_group(groups: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order rows by (group, -key) and give each its 0-based rank inside its group."""
    order = np.lexsort((-keys, groups))
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order, np.arange(len(order)) - first


def ndcg_at_k(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Mean NDCG@k over the groups with at least one relevant row (gain 2^label - 1).

    Ties in ``scores`` are broken by row order, so constant scores give no free credit.
    """
    if len(scores) == 0:
        return float("nan")
    gains = np.power(2.0, labels) - 1.0
    _, group_codes = np.unique(groups, return_inverse=True)
    group_codes = group_codes.reshape(-1)
    n_groups = int(group_codes.max()) + 1

    def dcg(keys: np.ndarray) -> np.ndarray:
        order, rank = _rank_in_group(group_codes, keys)
        top = rank < k
        discounted = np.where(top, gains[order] / np.log2(rank + 2.0), 0.0)
        return np.bincount(group_codes[order], weights=discounted, minlength=n_groups)

    ideal = dcg(labels.astype(float))
    actual = dcg(scores.astype(float) - 1e-12 * np.arange(len(scores)))
    relevant = ideal > 0
    return float(np.mean(actual[relevant] / ideal[relevant])) if relevant.any() else float("nan")


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (the chance a positive outranks a negative; ties count half)."""
    positive = positive.astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    average = (starts + ends + 1) / 2.0  # 1-based average rank of each tie block
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
