"""Item scorers: the learned LightGBM ranker, and the popularity fallback for a cold start.

Both score every (recipient, item) pair of a batch from the same :class:`PairInputs`. The
ranker is stored in the database as one artifact (a JSON header with its feature schema, then
LightGBM's own text model), so any worker on any machine loads exactly the model that was
promoted.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import ModelError
from engine.features.pairs import FeatureSchema, PairInputs, all_pairs, pair_matrix
from engine.learn.guard import ItemGuard

if TYPE_CHECKING:
    import lightgbm as lgb

MAGIC = b"kairos-ranker 1\n"
# Domain knowledge the model must respect, all else equal: a more popular item, or one closer to
# the recipient's known tastes, never scores lower. It keeps noisy features from inverting them.
INCREASING = ("item_popularity", "item_goal_rate", "prior_score", "topic_affinity", "topic_click_share",
              "topic_declared", "segment_affinity", "segment_lift", "segment_score")
CHUNK_PAIRS = 65536  # pairs scored per call: bounded memory whatever the batch
SEEN_PENALTY = 5.0
EARLY_STOPPING_ROUNDS = 30


class ItemScorer(ABC):
    """Scores (recipient x item) pairs; larger is better. Scores need not be probabilities."""

    version: str
    schema: FeatureSchema | None = None

    @property
    def evidence(self) -> float:
        """How many logged decisions the scorer learned from (0 for a fallback)."""
        return 0.0

    @abstractmethod
    def score_pairs(self, inputs: PairInputs, recipient_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """One score per pair."""

    def policy_scores(self, scores: np.ndarray, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """The (recipients x items) scores the policy ranks by: the model's, unless a guard
        (:mod:`engine.learn.guard`) keeps the default item where a deviation is not proven."""
        return scores

    def explorable(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray | None:
        """(items,) the items exploration may spend traffic on, or None for every item."""
        return None

    def score_all(self, inputs: PairInputs) -> np.ndarray:
        """(recipients x items) scores of every pair, in chunks."""
        n, m = len(inputs.recipient_values), len(inputs.item_values)
        scores = np.empty((n, m), dtype=np.float64)
        step = max(1, CHUNK_PAIRS // max(m, 1))
        for start in range(0, n, step):
            stop = min(n, start + step)
            rows, items = all_pairs(n, m, start, stop)
            scores[start:stop] = self.score_pairs(inputs, rows, items).reshape(stop - start, m)
        return scores


class PopularityScorer(ItemScorer):
    """Cold start: the log of the item's smoothed click rate plus the log of how much more of the
    recipient's clicks go to the item's topic than everyone's do, minus a penalty for items the
    recipient was already sent."""

    version = "popularity-affinity-2"

    def score_pairs(self, inputs: PairInputs, recipient_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        popularity = inputs.item_values[item_index, 0].astype(np.float64)
        lift = inputs.share_lift[recipient_index, inputs.item_topic[item_index]]
        already_sent = sent_before(inputs, recipient_index, item_index)
        return np.asarray(np.log(popularity) + np.log(lift) - SEEN_PENALTY * already_sent)


def sent_before(inputs: PairInputs, recipient_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
    """The ``sent_before`` cross feature of each pair."""
    logged = inputs.item_in_log[item_index]
    keys = np.where(logged >= 0, recipient_index * inputs.n_log_items + logged, -1)
    if len(inputs.sent_pairs) == 0:
        return np.zeros(len(keys))
    position = np.searchsorted(inputs.sent_pairs, keys).clip(0, len(inputs.sent_pairs) - 1)
    return np.asarray(inputs.sent_pairs[position] == keys, dtype=float)


@dataclass(frozen=True)
class TrainingParams:
    """LightGBM settings: at most ``rounds`` boosting rounds (early stopping decides); the rest as
    in LightGBM's documentation. The defaults are conservative on purpose: logged clicks are few
    and noisy, and small leaves over many rows generalize better than deep trees over few."""

    rounds: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.9
    lambda_l2: float = 10.0
    min_data_per_category: int = 200
    early_stopping: bool = True
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


class LightGBMRanker(ItemScorer):
    """A trained booster with the schema of its features.

    :param objective: ``lambdarank`` (scores rank items inside a message) or ``binary`` (scores
        are log-odds of reaching the goal; used when messages held one item each).
    """

    def __init__(self, booster: lgb.Booster, schema: FeatureSchema, objective: str, version: str,
                 metrics: dict[str, Any] | None = None, base: str | None = None, guard: ItemGuard | None = None
                 ) -> None:
        self.guard = guard
        self.booster = booster
        self.schema = schema
        self.objective = objective
        self.version = version
        self.metrics = metrics or {}
        self.base = base
        self._base_column = list(schema.names).index(base) if base is not None else -1

    def score_pairs(self, inputs: PairInputs, recipient_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return self.predict(pair_matrix(inputs, recipient_index, item_index))

    def policy_scores(self, scores: np.ndarray, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        return self.guard.apply(scores, item_ids) if self.guard is not None else scores

    def explorable(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray | None:
        return self.guard.explorable(item_ids) if self.guard is not None else None

    @property
    def evidence(self) -> float:
        return float(self.metrics.get("decisions", 0.0))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds for ``binary``) of a feature matrix in the schema's column order:
        the trees' sum, plus the base margin they were boosted from (if any)."""
        raw = np.asarray(self.booster.predict(matrix, raw_score=True, num_threads=2))
        if self._base_column < 0:
            return raw
        return np.asarray(raw + base_margin(matrix[:, self._base_column], self.objective))

    def to_bytes(self) -> bytes:
        assert self.schema is not None
        model = self.booster.model_to_string().encode()
        header = {"objective": self.objective, "version": self.version, "schema": self.schema.to_json(),
                  "metrics": self.metrics, "sha256": hashlib.sha256(model).hexdigest(), "base": self.base,
                  "guard": self.guard.to_json() if self.guard is not None else None}
        return MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + model

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "model") -> LightGBMRanker:
        """Load an artifact written by :meth:`to_bytes`; a damaged one raises :class:`ModelError`."""
        import lightgbm as lgb  # imported when a model is used: commands without one start faster

        if not data.startswith(MAGIC):
            raise ModelError(f"{where}: not a Kairos ranker artifact (it does not start with {MAGIC!r})")
        try:
            if b"\n" not in data[len(MAGIC):]:
                raise ValueError("the artifact is damaged or truncated")
            header_line, model_text = data[len(MAGIC):].split(b"\n", 1)
            header = json.loads(header_line)
            schema = FeatureSchema.from_json(header["schema"])
            # LightGBM aborts the process on a truncated model, so check integrity before it parses.
            if hashlib.sha256(model_text).hexdigest() != header["sha256"]:
                raise ValueError("its checksum does not match: the artifact is damaged or truncated")
            booster = lgb.Booster(model_str=model_text.decode())
        except (ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as exc:
            raise ModelError(f"{where}: the stored ranker cannot be loaded ({exc})") from None
        if booster.num_feature() != len(schema.names):
            raise ModelError(f"{where}: the booster has {booster.num_feature()} features, its schema "
                             f"{len(schema.names)}")
        base = header.get("base")
        if base is not None and base not in schema.names:
            raise ModelError(f"{where}: the base margin column {base!r} is not one of the schema's features")
        try:
            guard = ItemGuard.from_json(header["guard"]) if header.get("guard") else None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"{where}: the stored item guard cannot be read ({exc})") from None
        return cls(booster, schema, str(header["objective"]), str(header["version"]), dict(header["metrics"]),
                   base=str(base) if base is not None else None, guard=guard)


def base_margin(prior: np.ndarray, objective: str) -> np.ndarray:
    """The margin trees are boosted from, given a prior score column (a log expected rate, such as
    ``segment_score``): the score itself for ranking, its log-odds for ``binary``; 0 where missing."""
    prior = np.asarray(prior, dtype=np.float64)
    if objective == "binary":
        rate = np.clip(np.exp(prior), 1e-6, 1.0 - 1e-6)
        prior = np.log(rate) - np.log1p(-rate)
    return np.asarray(np.where(np.isfinite(prior), prior, 0.0))


@dataclass(frozen=True)
class TrainingData:
    """A feature matrix with its labels and (LambdaRank) message group sizes, rows grouped."""

    matrix: np.ndarray
    labels: np.ndarray
    group_sizes: Sequence[int] | None = None
    init_score: np.ndarray | None = None

    def dataset(self, schema: FeatureSchema, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        import lightgbm as lgb

        return lgb.Dataset(self.matrix, label=self.labels, init_score=self.init_score,
                           group=list(self.group_sizes) if self.group_sizes is not None else None,
                           feature_name=list(schema.names), categorical_feature=list(schema.categorical),
                           reference=reference, free_raw_data=True)


def fit_booster(data: TrainingData, schema: FeatureSchema, objective: str, params: TrainingParams, seed: int, k: int,
                stopping: TrainingData | None = None) -> lgb.Booster:
    """Train LightGBM: LambdaRank over message groups, or a pointwise binary objective.

    :param stopping: held-out rows that stop boosting once they stop improving (at most
        ``params.rounds`` rounds), so the number of trees fits the data rather than a guess.
    """
    import lightgbm as lgb

    names = list(schema.names)
    settings: dict[str, Any] = {
        "objective": objective, "learning_rate": params.learning_rate, "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf, "feature_fraction": params.feature_fraction,
        "lambda_l2": params.lambda_l2, "num_threads": params.threads, "seed": seed, "deterministic": True,
        "force_col_wise": True, "verbosity": -1, "min_data_per_group": params.min_data_per_category,
        "cat_smooth": 10.0, "cat_l2": 20.0,
    }
    settings["monotone_constraints"] = [1 if name in INCREASING else 0 for name in names]
    if objective == "lambdarank":
        settings.update({"label_gain": [0.0, 1.0, 3.0], "lambdarank_truncation_level": max(k * 2, 10),
                         "eval_at": [k]})
    settings["metric"] = "ndcg" if objective == "lambdarank" else "binary_logloss"
    settings.update(params.extra)
    dataset = data.dataset(schema)
    if stopping is None:
        return lgb.train(settings, dataset, num_boost_round=params.rounds)
    return lgb.train(settings, dataset, num_boost_round=params.rounds, valid_sets=[stopping.dataset(schema, dataset)],
                     callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)])
