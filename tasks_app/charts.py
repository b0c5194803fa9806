"""Geometry for the health page's bar charts, drawn as inline SVG by the template.

Charts are computed here and rendered on the server, so they need no script, no library and no
network, read the same in every browser, and refresh with the page they are on.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A bar of one series: name (the CSS class and the legend's label) and value.
Segment = tuple[str, int]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str  # the tooltip


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    bars: list[Bar]
    value_ticks: list[Tick]  # grid lines with their values
    category_ticks: list[Tick]  # the labels along the other axis
    value_max: int


def nice_ceiling(value: int, ticks: int = 4) -> tuple[int, int]:
    """Round a maximum up to a readable scale; return (scale maximum, step between grid lines)."""
    if value <= 0:
        return ticks, 1
    rough = value / ticks
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    step = max(1, int(step))
    return step * math.ceil(value / step), step


def stacked_columns(
    columns: Sequence[tuple[str, Sequence[Segment]]],
    label_every: int,
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Vertical stacked bars, one per column (such as a minute), labelled every `label_every` columns."""
    left, top, right, bottom = 40.0, 10.0, width - 8.0, height - 24.0
    total = max((sum(value for _, value in segments) for _, segments in columns), default=0)
    scale_max, step = nice_ceiling(total)
    slot = (right - left) / max(1, len(columns))
    gap = min(2.0, slot * 0.2)
    bars, labels = [], []
    for index, (label, segments) in enumerate(columns):
        x = left + index * slot
        base = bottom
        for series, value in segments:
            if value <= 0:
                continue
            bar_height = (bottom - top) * value / scale_max
            base -= bar_height
            bars.append(Bar(x + gap / 2, base, slot - gap, bar_height, series, f"{label}: {value} {series}"))
        if index % label_every == 0:
            labels.append(Tick(x + slot / 2, label))
    grid = [Tick(bottom - (bottom - top) * v / scale_max, str(v)) for v in range(0, scale_max + 1, step)]
    return Chart(width, height, left, top, right, bottom, bars, grid, labels, scale_max)


def stacked_rows(
    rows: Sequence[tuple[str, Sequence[Segment]]],
    width: int = 720,
    row_height: int = 30,
    label_width: int = 90,
) -> Chart:
    """Horizontal stacked bars, one per row (such as a queue), its label on the left."""
    left, top, right = float(label_width), 8.0, width - 40.0
    bottom = top + row_height * max(1, len(rows))
    height = int(bottom + 22)
    total = max((sum(value for _, value in segments) for _, segments in rows), default=0)
    scale_max, step = nice_ceiling(total)
    bars, labels = [], []
    for index, (label, segments) in enumerate(rows):
        y = top + index * row_height
        start = left
        for series, value in segments:
            if value <= 0:
                continue
            bar_width = (right - left) * value / scale_max
            bars.append(Bar(start, y + 5, bar_width, row_height - 10, series, f"{label}: {value} {series}"))
            start += bar_width
        labels.append(Tick(y + row_height / 2, label))
    grid = [Tick(left + (right - left) * v / scale_max, str(v)) for v in range(0, scale_max + 1, step)]
    return Chart(width, height, left, top, right, bottom, bars, grid, labels, scale_max)
