"""Server-rendered chart geometry: stacked bars as integer SVG coordinates.

No JavaScript and no inline styles (the portal's CSP is `style-src 'self'`): the template
draws `<rect>`s with these coordinates and a CSS class per series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 260
LEFT = 72  # room for the value axis labels
BOTTOM = 24  # room for the day labels
TOP = 8
MAX_X_LABELS = 10


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int
    series: str
    title: str


@dataclass(frozen=True)
class Label:
    x: int
    y: int
    text: str


@dataclass(frozen=True)
class StackedBarChart:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    rects: list[Rect]
    y_ticks: list[Label]
    x_labels: list[Label]
    series: list[str]
    empty: bool


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^k at or above `value` (at least 1)."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def stacked_bars(
    columns: Sequence[tuple[str, Mapping[str, int]]],
    series: Sequence[str],
    value_label: Callable[[int], str],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> StackedBarChart:
    """One bar per column, one stacked segment per series (negative values draw nothing)."""
    plot_w, plot_h = width - LEFT, height - BOTTOM - TOP
    top = nice_ceiling(max([sum(max(v, 0) for v in c.values()) for _l, c in columns] or [0]))
    slot = plot_w // max(len(columns), 1)
    bar_w = max(slot * 7 // 10, 1)
    rects: list[Rect] = []
    x_labels: list[Label] = []
    every = max(1, -(-len(columns) // MAX_X_LABELS))  # ceiling division
    for i, (label, values) in enumerate(columns):
        x = LEFT + i * slot + (slot - bar_w) // 2
        base = height - BOTTOM
        for name in series:
            value = max(values.get(name, 0), 0)
            h = value * plot_h // top
            if h > 0:
                rects.append(
                    Rect(x, base - h, bar_w, h, name, f"{label} {name}: {value_label(value)}")
                )
                base -= h
        if i % every == 0:
            x_labels.append(Label(x + bar_w // 2, height - 6, label))
    y_ticks = [
        Label(LEFT - 6, height - BOTTOM - plot_h * k // 4 + 4, value_label(top * k // 4))
        for k in range(5)
    ]
    empty = not any(r.height for r in rects)
    return StackedBarChart(
        width, height, LEFT, height - BOTTOM, rects, y_ticks, x_labels, list(series), empty
    )
