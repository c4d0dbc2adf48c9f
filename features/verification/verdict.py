"""Judging a release from its health queries: the same window before and after.

Pure functions over the points of one range query per health query, so the rule is easy
to read and to test: for each query, the mean over [deploy - window, deploy) against the
mean over [rollout finished, + window]. A query is degraded when the mean after exceeds
the mean before by more than `max_increase` (a fraction of it) AND by more than
`min_delta` (so 0.1% -> 0.3% errors is not called a disaster). The release is degraded
when any query is; unknown when no query had data on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from catalog.model import HealthQuery
from kernel.ports.systems import Series

State = Literal["healthy", "degraded", "unknown"]


@dataclass(frozen=True)
class Window:
    """The two ranges compared: `before` ends where the rollout started, `after` starts
    where it finished; both are `seconds` long (the after one may be cut short by now)."""

    started_at: datetime
    finished_at: datetime
    seconds: int

    @property
    def before_start(self) -> float:
        return self.started_at.timestamp() - self.seconds

    @property
    def after_end(self) -> float:
        return self.finished_at.timestamp() + self.seconds


@dataclass(frozen=True)
class QueryResult:
    """One health query judged: its means before and after, and what that says."""

    name: str
    unit: str
    before: float | None
    after: float | None
    state: State

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "before": self.before,
            "after": self.after,
            "state": self.state,
        }


def mean(points: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """The mean of the finite values with start <= t <= end; None without any."""
    values = [v for t, v in points if start <= t <= end and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def judge(query: HealthQuery, series: Sequence[Series], window: Window) -> QueryResult:
    """Judge one query. Several series (a query without `sum`) are judged by their sum."""
    points = _summed(series)
    before = mean(points, window.before_start, window.started_at.timestamp())
    after = mean(points, window.finished_at.timestamp(), window.after_end)
    state: State
    if before is None or after is None:
        state = "unknown"
    elif after - before > query.min_delta and after > before * (1 + query.max_increase):
        state = "degraded"
    else:
        state = "healthy"
    return QueryResult(name=query.name, unit=query.unit, before=before, after=after, state=state)


def overall(results: Sequence[QueryResult]) -> State:
    """Degraded if any query is; healthy if at least one is and none is degraded."""
    states = {r.state for r in results}
    if "degraded" in states:
        return "degraded"
    return "healthy" if "healthy" in states else "unknown"


def _summed(series: Sequence[Series]) -> list[tuple[float, float]]:
    if len(series) == 1:
        return list(series[0].points)
    totals: dict[float, float] = {}
    for one in series:
        for t, v in one.points:
            if math.isfinite(v):
                totals[t] = totals.get(t, 0.0) + v
    return sorted(totals.items())


def formatted(value: float | None, unit: str) -> str:
    """A value for people: 2.5%, 310 ms, 3, or `no data`."""
    if value is None:
        return "no data"
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if unit == "count":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Observed:
    """What a check found: each query's result and its series (for the chart)."""

    results: list[QueryResult]
    series: dict[str, list[Series]]
    errors: dict[str, str]
    start: datetime
    end: datetime

    @property
    def state(self) -> State:
        return overall(self.results)
