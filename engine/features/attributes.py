"""Free-form attributes (imported columns of recipients and items) as numeric feature columns.

An :class:`AttributeEncoding` is learned once from the training data and stored with the model,
so scoring encodes attributes exactly as training did: numbers stay numbers (booleans 0/1),
anything else becomes a category code into a fixed vocabulary (LightGBM treats those columns as
categorical). Missing values and categories never seen in training are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ATTRIBUTES = 40
MAX_CATEGORIES = 30
# A text column with more distinct values than this share of rows is an identifier, not a feature.
IDENTIFIER_SHARE = 0.2


@dataclass(frozen=True)
class EncodedAttribute:
    name: str
    kind: str                      # "number" | "category"
    categories: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EncodedAttribute:
        return cls(str(data["name"]), str(data["kind"]), tuple(str(c) for c in data.get("categories", ())))


@dataclass(frozen=True)
class AttributeEncoding:
    """Which attributes become features, and how."""

    attributes: tuple[EncodedAttribute, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes if a.kind == "category")

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(rows x attributes) float32."""
        out = np.full((len(rows), len(self.attributes)), np.nan, dtype=np.float32)
        for j, attribute in enumerate(self.attributes):
            values = np.array([row.get(attribute.name) for row in rows], dtype=object)
            if attribute.kind == "number":
                numeric = np.array([_as_number(v) for v in values], dtype=np.float64)
                out[:, j] = numeric
            else:
                lookup = {c: float(i) for i, c in enumerate(attribute.categories)}
                out[:, j] = [lookup.get(str(v), np.nan) if v is not None else np.nan for v in values]
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.attributes]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> AttributeEncoding:
        return cls(tuple(EncodedAttribute.from_json(a) for a in data))


def _as_number(value: Any) -> float:
    if value is None:
        return np.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return np.nan


def learn_encoding(rows: Sequence[Mapping[str, Any]]) -> AttributeEncoding:
    """Decide how to encode the attributes found in ``rows`` (the training population)."""
    seen: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None:
                seen.setdefault(key, []).append(value)
    attributes = []
    for name in sorted(seen)[:MAX_ATTRIBUTES]:
        values = seen[name]
        if all(isinstance(v, bool | int | float) for v in values):
            attributes.append(EncodedAttribute(name, "number"))
            continue
        text, counts = np.unique(np.array([str(v) for v in values]), return_counts=True)
        if len(text) > max(MAX_CATEGORIES, IDENTIFIER_SHARE * len(rows)):
            continue
        order = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
        attributes.append(EncodedAttribute(name, "category", tuple(str(t) for t in text[order])))
    return AttributeEncoding(tuple(attributes))
