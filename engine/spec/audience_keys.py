"""The ``[audience]`` keys of predicted audiences and propensity tiers, read into frozen objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.errors import SpecError
from engine.spec.model import Predicted, Tiers


class FieldReader(Protocol):
    """What :mod:`engine.spec.load` offers to read one document's fields with located errors."""

    def fail(self, dotted: str, problem: str) -> SpecError: ...

    def table(self, dotted: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]: ...

    def typed(self, dotted: str, value: Any, parse: Callable[[Any], Any]) -> Any: ...


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("a probability from 0 to 1")
    return float(value)


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ValueError("a percentage above 0 and at most 100")
    return float(value)


def read_predicted(read: FieldReader, value: Any) -> Predicted:
    """``predicted = { min_probability = 0.02 }`` or ``predicted = { top_percent = 10 }``."""
    spec = read.table("audience.predicted", value, ("min_probability", "top_percent"))
    if len(spec) != 1:
        raise read.fail("audience.predicted", "expected exactly one of min_probability (e.g. "
                        "{ min_probability = 0.02 }) or top_percent (e.g. { top_percent = 10 })")
    if "min_probability" in spec:
        return Predicted(min_probability=read.typed("audience.predicted.min_probability",
                                                    spec["min_probability"], _probability))
    return Predicted(top_percent=read.typed("audience.predicted.top_percent", spec["top_percent"], _percent))


def read_tiers(read: FieldReader, value: Any) -> Tiers:
    """``tiers = { high = 20, medium = 50 }``: cumulative top percentages of the scores."""
    spec = read.table("audience.tiers", value, ("high", "medium"))
    default = Tiers()
    high = read.typed("audience.tiers.high", spec.get("high", default.high), _percent)
    medium = read.typed("audience.tiers.medium", spec.get("medium", max(default.medium, high)), _percent)
    if medium < high:
        raise read.fail("audience.tiers.medium", f"expected a top percentage at least high's ({high:g}): "
                        "tiers are cumulative, e.g. { high = 20, medium = 50 }")
    return Tiers(high=high, medium=medium)
