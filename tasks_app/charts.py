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
    # Steps of 1, 2, 2.5 or 5 times a power of ten, whole numbers only (counts of jobs).
    steps = (m * magnitude for m in (1, 2, 2.5, 5, 10))
    step = max(1, int(next(s for s in steps if s >= rough and float(s).is_integer())))
    return step * math.ceil(value / step), step


def stacked_bars(
    groups: Sequence[tuple[str, Sequence[Segment]]], horizontal: bool, label_every: int = 1, width: int = 720
) -> Chart:
    """Stacked bars, one per group: rows labelled on the left, or columns labelled every `label_every` and the last."""
    count = max(1, len(groups))
    if horizontal:
        left, top, right, bottom = 90.0, 8.0, width - 40.0, 8.0 + 30 * count
        height = int(bottom + 22)  # room for the values below
    else:
        left, top, right, bottom, height = 40.0, 10.0, width - 8.0, 196.0, 220
    scale_max, step = nice_ceiling(max((sum(value for _, value in segments) for _, segments in groups), default=0))
    # The value axis runs right (rows) or up (columns); the groups share the other one.
    length, slot = (right - left, (bottom - top) / count) if horizontal else (bottom - top, (right - left) / count)
    gap = 10.0 if horizontal else min(2.0, slot * 0.2)
    bars, labels = [], []
    for index, (label, segments) in enumerate(groups):
        offset, start = index * slot, 0.0
        for series, value in segments:
            if value <= 0:
                continue
            size, title = length * value / scale_max, f"{label}: {value} {series}"
            if horizontal:
                bars.append(Bar(left + start, top + offset + gap / 2, size, slot - gap, series, title))
            else:
                bars.append(Bar(left + offset + gap / 2, bottom - start - size, slot - gap, size, series, title))
            start += size
        if horizontal or index % label_every == 0 or index == len(groups) - 1:
            labels.append(Tick((top if horizontal else left) + offset + slot / 2, label))
    ticks = [(length * v / scale_max, str(v)) for v in range(0, scale_max + 1, step)]
    grid = [Tick(left + at if horizontal else bottom - at, text) for at, text in ticks]
    return Chart(width, height, left, top, right, bottom, bars, grid, labels, scale_max)
