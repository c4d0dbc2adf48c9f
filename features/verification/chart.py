"""The chart of a release: each health query over time, the rollout marked, the window
before shaded against the window after. A PNG, rendered by matplotlib.

matplotlib is imported inside `render` (and set to its Agg backend, which draws to
memory without a display), so neither the bot's start time nor its memory grows until
the first chart is drawn. One subplot per query, stacked, sharing the time axis; the
PNG carries how many series it drew in its `Description` text chunk.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from features.verification.verdict import formatted

WIDTH_PX = 960
ROW_PX = 220
DPI = 100


@dataclass(frozen=True)
class Panel:
    """One query's series: its name, unit, and (label, points) per series."""

    name: str
    unit: str
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]]


@dataclass(frozen=True)
class Chart:
    png: bytes
    width: int
    height: int
    series: int
    """How many lines were drawn (over every panel)."""


def warm_up() -> None:
    """Import matplotlib and its Agg backend (seconds on a busy machine), so the first
    chart after a deploy is not late: called when a verification is scheduled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: F401


def render(
    title: str,
    panels: Sequence[Panel],
    *,
    origin: datetime,
    marks: Sequence[tuple[datetime, datetime, str]] = (),
    before: tuple[datetime, datetime] | None = None,
) -> Chart:
    """The PNG. Time runs in minutes from `origin` (the rollout's end, or now); `marks`
    are rollouts (start, end, label) drawn as red bands; `before` is shaded grey as the
    window compared against. Fixed margins and numeric minutes (no date locator, no
    tight_layout) keep a chart well under 300 ms."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = max(1, len(panels))
    height = ROW_PX * rows + 70
    figure = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI)
    axes_list = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    figure.subplots_adjust(
        left=0.08, right=0.98, top=1 - 45 / height, bottom=45 / height, hspace=0.35
    )
    zero = origin.timestamp()

    def minutes(t: float) -> float:
        return (t - zero) / 60

    drawn = 0
    for axes, panel in zip(axes_list, panels or [Panel("no queries", "", ())], strict=False):
        for label, points in panel.series:
            finite = [(t, v) for t, v in points if math.isfinite(v)]
            if not finite:
                continue
            axes.plot(
                [minutes(t) for t, _ in finite],
                [_scaled(v, panel.unit) for _, v in finite],
                linewidth=1.4,
                label=label or panel.name,
            )
            drawn += 1
        axes.set_ylabel(_axis_label(panel), fontsize=8)
        axes.set_title(panel.name, fontsize=9, loc="left")
        axes.grid(True, alpha=0.3)
        axes.yaxis.set_major_locator(MaxNLocator(4))
        axes.tick_params(labelsize=8)
        if before is not None:
            axes.axvspan(
                minutes(before[0].timestamp()),
                minutes(before[1].timestamp()),
                color="0.85",
                alpha=0.6,
            )
        for start, end, label in marks:
            axes.axvspan(
                minutes(start.timestamp()), minutes(end.timestamp()), color="tab:red", alpha=0.25
            )
            axes.axvline(minutes(end.timestamp()), color="tab:red", linewidth=1.2, linestyle="--")
            axes.text(
                minutes(end.timestamp()),
                0.97,
                " " + label,
                transform=axes.get_xaxis_transform(),
                fontsize=7,
                color="tab:red",
                va="top",
            )
        if len(panel.series) > 1:
            axes.legend(fontsize=7, loc="upper left")
    axes_list[-1].xaxis.set_major_locator(MaxNLocator(8))
    axes_list[-1].set_xlabel(f"minutes from {origin:%Y-%m-%d %H:%M} UTC", fontsize=8)
    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(
        buffer,
        format="png",
        dpi=DPI,
        metadata={"Description": f"series={drawn}", "Software": None},
        pil_kwargs={"compress_level": 1},  # zlib's fastest: 6x quicker, the PNG ~20% larger
    )
    return Chart(png=buffer.getvalue(), width=WIDTH_PX, height=height, series=drawn)


def _scaled(value: float, unit: str) -> float:
    return value * 100 if unit == "ratio" else value * 1000 if unit == "seconds" else value


def _axis_label(panel: Panel) -> str:
    return {"ratio": "%", "seconds": "ms", "count": "count"}.get(panel.unit, panel.unit)


def describe(panels: Sequence[Panel]) -> str:
    """Alt text: each query's last value."""
    parts = []
    for panel in panels:
        last = [v for _, points in panel.series for _, v in points[-1:] if math.isfinite(v)]
        parts.append(f"{panel.name} now {formatted(sum(last) if last else None, panel.unit)}")
    return "; ".join(parts)[:1000]


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def png_text(png: bytes) -> dict[str, Any]:
    """The PNG's tEXt chunks (keyword -> text)."""
    found: dict[str, Any] = {}
    position = 8
    while position + 8 <= len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind = png[position + 4 : position + 8]
        data = png[position + 8 : position + 8 + length]
        if kind == b"tEXt" and b"\x00" in data:
            keyword, text = data.split(b"\x00", 1)
            found[keyword.decode("latin-1")] = text.decode("latin-1")
        position += 12 + length
    return found
