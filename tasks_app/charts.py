"""Geometry for the health page's bar charts, drawn as inline SVG by the template.

Charts are computed here and rendered on the server, so they need no script, no library and no
network, read the same in every browser, and refresh with the page they are on.
"""

import math
from collections.abc import Iterator, Sequence
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
    # Steps of 1, 2, 2.5 or 5 times a power of ten, whole numbers only (counts of jobs).
    steps = (m * magnitude for m in (1, 2, 2.5, 5, 10))
    step = max(1, int(next(s for s in steps if s >= rough and float(s).is_integer())))
    return step * math.ceil(value / step), step


def stacked(segments: Sequence[Segment], scale_max: int) -> Iterator[tuple[str, int, float, float]]:
    """Each non-empty segment of a bar: series, value, and where it starts and ends as fractions of the scale."""
    start = 0.0
    for series, value in segments:
        if value > 0:
            end = start + value / scale_max
            yield series, value, start, end
            start = end


def stacked_columns(
    columns: Sequence[tuple[str, Sequence[Segment]]],
    label_every: int,
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Vertical stacked bars, one per column (such as a minute), labelled every `label_every` columns."""
    left, top, right, bottom = 40.0, 10.0, width - 8.0, height - 24.0
    scale_max, step = nice_ceiling(largest_total(columns))
    tall = bottom - top
    slot = (right - left) / max(1, len(columns))
    gap = min(2.0, slot * 0.2)
    bars, labels = [], []
    for index, (label, segments) in enumerate(columns):
        x = left + index * slot
        for series, value, start, end in stacked(segments, scale_max):
            title = f"{label}: {value} {series}"
            bars.append(Bar(x + gap / 2, bottom - end * tall, slot - gap, (end - start) * tall, series, title))
        if index % label_every == 0 or index == len(columns) - 1:  # and the newest column
            labels.append(Tick(x + slot / 2, label))
    grid = [Tick(bottom - tall * v / scale_max, str(v)) for v in range(0, scale_max + 1, step)]
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
    scale_max, step = nice_ceiling(largest_total(rows))
    wide = right - left
    bars, labels = [], []
    for index, (label, segments) in enumerate(rows):
        y = top + index * row_height
        for series, value, start, end in stacked(segments, scale_max):
            title = f"{label}: {value} {series}"
            bars.append(Bar(left + start * wide, y + 5, (end - start) * wide, row_height - 10, series, title))
        labels.append(Tick(y + row_height / 2, label))
    grid = [Tick(left + wide * v / scale_max, str(v)) for v in range(0, scale_max + 1, step)]
    return Chart(width, int(bottom + 22), left, top, right, bottom, bars, grid, labels, scale_max)


def largest_total(groups: Sequence[tuple[str, Sequence[Segment]]]) -> int:
    return max((sum(value for _, value in segments) for _, segments in groups), default=0)
