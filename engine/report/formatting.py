"""How a report's numbers read, the same on the terminal and in HTML: rates in percent with
their interval, lifts in percentage points."""

from __future__ import annotations

from datetime import timedelta

from engine.report.stats import Lift, Rate

DASH = "–"
RUNS_SHOWN = 20  # a triggered campaign has a run per event: tables show the latest


def percent(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}%}"


def interval(low: float | None, high: float | None, digits: int = 1) -> str:
    return DASH if low is None or high is None else f"[{low:.{digits}%}, {high:.{digits}%}]"


def duration(span: timedelta) -> str:
    """A goal window as a campaign file writes it: ``48h``, ``90m``."""
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def points(value: float | None) -> str:
    """A difference of two rates in percentage points."""
    return DASH if value is None else f"{value * 100:+.2f} pts"


def share(rate: Rate) -> str:
    """A rate in percent, without its interval (a dash when nothing was counted)."""
    return percent(rate.value) if rate.trials else DASH


def rate_cell(rate: Rate) -> str:
    return f"{percent(rate.value)} {interval(rate.low, rate.high)}" if rate.trials else DASH


def lift_cell(lift: Lift | None) -> str:
    if lift is None or lift.absolute is None:
        return DASH
    mark = " *" if lift.significant else ""
    return f"{points(lift.absolute)} [{lift.low * 100:+.2f}, {lift.high * 100:+.2f}]{mark}" \
        if lift.low is not None and lift.high is not None else points(lift.absolute)


def lift_sentence(lift: Lift | None) -> str:
    """The lift in words: absolute with its interval, relative with its, and significance."""
    if lift is None or lift.absolute is None:
        return "lift: not measurable yet (needs sent messages and holdout members)"
    relative = ""
    if lift.relative is not None:
        relative = f", {lift.relative:+.1%} relative"
        if lift.relative_low is not None and lift.relative_high is not None:
            relative += f" [{lift.relative_low:+.1%}, {lift.relative_high:+.1%}]"
    verdict = "significant at 95%" if lift.significant else "not significant at 95%"
    return f"lift: {lift_cell(lift).removesuffix(' *')} (95% CI){relative}; {verdict}"


def capped_note(states: dict[str, int]) -> str | None:
    """A caution when frequency-capped members (sent nothing, in neither group) could tilt the lift."""
    capped = states.get("capped", 0)
    if not capped or not states.get("holdout", 0):
        return None
    return (f"note: {capped:,} capped member(s) got nothing and are in neither group; the holdout was drawn "
            "before capping, so it also holds members who would have been capped")
