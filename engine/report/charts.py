"""Chart geometry for the HTML report: rates with their intervals, and lifts around zero.

Charts are inline SVG drawn by the report's template from the shapes computed here, so the page
needs nothing from the network and every label goes through the template's escaping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.report.model import CampaignReport
from engine.report.stats import Lift, Rate

WIDTH = 720
LABEL_WIDTH = 200
ROW_HEIGHT = 30
TOP = 10
AXIS_HEIGHT = 28


@dataclass(frozen=True)
class Bar:
    """One row: a bar (or a point) at ``x``, an interval from ``low_x`` to ``high_x``."""

    label: str
    text: str
    y: float
    x: float
    low_x: float | None
    high_x: float | None
    kind: str  # treated | holdout | positive | negative | neutral


@dataclass(frozen=True)
class Tick:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    title: str
    height: float
    zero_x: float
    bars: list[Bar]
    ticks: list[Tick]
    points: bool  # draw points (lifts) rather than bars (rates)
    width: int = WIDTH
    label_width: int = LABEL_WIDTH


def _nice_step(span: float) -> float:
    raw = span / 5 if span > 0 else 0.01
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _scale(low: float, high: float) -> tuple[float, float, list[float]]:
    step = _nice_step(high - low)
    start, stop = math.floor(low / step) * step, math.ceil(high / step) * step
    if stop <= start:
        stop = start + step
    return start, stop, [start + i * step for i in range(round((stop - start) / step) + 1)]


def _chart(title: str, rows: Sequence[tuple[str, str, float, float | None, float | None, str]], low: float,
           high: float, *, points: bool, unit: str) -> Chart:
    start, stop, ticks = _scale(low, high)
    span = WIDTH - LABEL_WIDTH - 70

    def x(value: float) -> float:
        return LABEL_WIDTH + (value - start) / (stop - start) * span

    bars = [Bar(label, text, TOP + j * ROW_HEIGHT, x(value), None if lo is None else x(lo),
                None if hi is None else x(hi), kind)
            for j, (label, text, value, lo, hi, kind) in enumerate(rows)]
    digits = 0 if unit == "%" and all(abs(t * 100 - round(t * 100)) < 1e-9 for t in ticks) else 1
    labels = [Tick(x(t), f"{t * 100:+.{digits}f}" if points else f"{t * 100:.{digits}f}{unit}") for t in ticks]
    return Chart(title, TOP + len(rows) * ROW_HEIGHT + AXIS_HEIGHT, x(0.0), bars, labels, points)


def rate_chart(title: str, rows: Sequence[tuple[str, Rate, str]]) -> Chart:
    """Bars of rates from zero, with their 95% intervals as whiskers."""
    top = max([r.high or r.value for _, r, _ in rows] + [0.01])
    return _chart(title, [(label, f"{r.value:.1%}" if r.trials else "–", r.value, r.low, r.high, kind)
                          for label, r, kind in rows], 0.0, top, points=False, unit="%")


def lift_chart(title: str, rows: Sequence[tuple[str, Lift]]) -> Chart:
    """Absolute lifts (percentage points) as points with their 95% intervals, around zero."""
    measured = [(label, lift) for label, lift in rows if lift.absolute is not None]
    bounds = [b for _, lift in measured for b in (lift.low, lift.high, lift.absolute) if b is not None] or [0.0]
    shapes = []
    for label, lift in measured:
        assert lift.absolute is not None
        kind = "neutral" if not lift.significant else "positive" if lift.absolute > 0 else "negative"
        shapes.append((label, f"{lift.absolute * 100:+.2f} pts", lift.absolute, lift.low, lift.high, kind))
    return _chart(title, shapes, min(0.0, *bounds), max(0.0, *bounds), points=True, unit=" pts")


def report_charts(report: CampaignReport) -> list[Chart]:
    """The report's charts: goal rate treated vs holdout, per variant, per group and variant when
    split (where a variant that wins with one persona and loses with another shows), and lifts."""
    overall = report.overall
    holdout = [("holdout", overall.holdout, "holdout")] if overall.holdout is not None else []
    charts = [rate_chart("Goal rate: treated vs holdout (95% CI)", [("treated", overall.goal, "treated"), *holdout])]
    if report.variants:
        charts.append(rate_chart("Goal rate per variant (95% CI)",
                                 [*((v.name, v.goal, "treated") for v in report.variants), *holdout]))
    if report.groups:
        charts.append(rate_chart(f"Goal rate per {report.split_by} and variant (95% CI)",
                                 [(f"{g.overall.name} · {v.name}", v.goal, "treated")
                                  for g in report.groups for v in g.variants]))
    lifts = [(v.name, v.lift) for v in report.variants if v.lift is not None]
    lifts += [(f"{report.split_by}: {g.overall.name}", g.overall.lift) for g in report.groups
              if g.overall.lift is not None]
    if any(lift.absolute is not None for _, lift in lifts):
        charts.append(lift_chart("Lift over holdout, percentage points (95% CI)", lifts))
    return charts
