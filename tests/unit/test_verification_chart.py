"""The verification chart: a PNG of the right size with one line per series, the rollout
marked; matplotlib only loaded when a chart is drawn. One chart is kept under
test-artifacts/ for review."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from features.verification.chart import (
    ROW_PX,
    WIDTH_PX,
    Panel,
    describe,
    png_size,
    png_text,
    render,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FINISHED = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def points(before: float, after: float) -> list[tuple[float, float]]:
    zero = FINISHED.timestamp()
    return [(zero + s, before if s < 0 else after) for s in range(-600, 600, 10)]


def test_a_release_chart_is_a_png_with_a_line_per_series_and_is_kept() -> None:
    panels = [
        Panel("error ratio", "ratio", [("", points(0.01, 0.12))]),
        Panel("p99 latency", "seconds", [("", points(0.2, 0.25))]),
        Panel("restarts", "count", [("pod=a", points(0, 1)), ("pod=b", points(0, 3))]),
    ]
    started = FINISHED - timedelta(seconds=30)

    chart = render(
        "checkout in prod: deploy 1.4.3 (degraded)",
        panels,
        origin=FINISHED,
        marks=[(started, FINISHED, "deploy 1.4.3")],
        before=(started - timedelta(minutes=10), started),
    )

    assert png_size(chart.png) == (WIDTH_PX, 3 * ROW_PX + 70) == (chart.width, chart.height)
    assert chart.series == 4
    assert png_text(chart.png)["Description"] == "series=4"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "verification-chart.png").write_bytes(chart.png)


def test_series_without_a_number_are_not_drawn() -> None:
    empty = [(FINISHED.timestamp(), math.nan)]
    chart = render(
        "x",
        [Panel("error ratio", "ratio", [("", empty)]), Panel("p99", "seconds", [])],
        origin=FINISHED,
    )
    assert chart.series == 0
    assert png_size(chart.png) == (WIDTH_PX, 2 * ROW_PX + 70)


def test_alt_text_says_each_querys_latest_value() -> None:
    panels = [Panel("error ratio", "ratio", [("", points(0.01, 0.12))])]
    assert describe(panels) == "error ratio now 12.00%"


def test_matplotlib_is_not_imported_until_a_chart_is_drawn() -> None:
    code = "import sys, app.bootstrap, features.verification; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
