"""Small inline SVG charts for the HTML report (no plotting library needed).

Percentages on a 0–100 axis; every label escaped. Colours come from a short fixed palette so
an arm keeps its colour across charts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from bastion.desktop.lab.stats import Interval

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


@dataclass(frozen=True)
class Point:
    """One arm on a chart: its label, accuracy interval and cost (seconds per answer)."""

    label: str
    accuracy: Interval | None
    seconds: float | None = None


def colour(i: int) -> str:
    """The colour of the ``i``-th arm (the palette repeats after eight)."""
    return PALETTE[i % len(PALETTE)]


def accuracy_bars(points: Sequence[Point], width: int = 640) -> str:
    """Horizontal bars of accuracy per arm, with the 95% interval as a whisker."""
    label_w, row_h, top, bottom = 260, 30, 10, 36
    plot_w = width - label_w - 30
    height = top + row_h * len(points) + bottom

    def x(value: float) -> float:
        return label_w + plot_w * max(0.0, min(1.0, value))

    parts = [_open(width, height, "Accuracy per arm with 95% intervals")]
    for tick in range(0, 101, 20):
        tx = x(tick / 100)
        parts.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{height - bottom}" stroke="#ddd"/>'
                     f'<text x="{tx:.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick}%</text>')
    for i, point in enumerate(points):
        y = top + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">'
                     f"{escape(point.label)}</text>")
        if point.accuracy is None:
            continue
        acc = point.accuracy
        parts.append(f'<rect x="{label_w}" y="{y + 6}" width="{x(acc.estimate) - label_w:.1f}" '
                     f'height="{row_h - 12}" fill="{colour(i)}"><title>{escape(point.label)}: '
                     f"{escape(acc.percent())}</title></rect>")
        cy = y + row_h / 2
        parts.append(f'<line x1="{x(acc.low):.1f}" y1="{cy:.1f}" x2="{x(acc.high):.1f}" y2="{cy:.1f}" '
                     f'stroke="#222" stroke-width="1.5"/>'
                     + "".join(f'<line x1="{x(v):.1f}" y1="{cy - 5:.1f}" x2="{x(v):.1f}" '
                               f'y2="{cy + 5:.1f}" stroke="#222" stroke-width="1.5"/>'
                               for v in (acc.low, acc.high)))
    parts.append(f'<text x="{label_w + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
                 "share of questions answered right</text></svg>")
    return "".join(parts)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def accuracy_vs_cost(points: Sequence[Point], width: int = 640, plot_h: int = 280) -> str:
    """Accuracy (with its interval) against mean seconds per answer, one dot per arm, with a
    legend underneath (labels beside the dots would overlap when arms cost the same)."""
    left, right, top, axis, legend_row = 56, 30, 14, 44, 18
    plot_w = width - left - right
    height = top + plot_h + axis + legend_row * len(points) + 6
    costs = [p.seconds for p in points if p.seconds is not None and p.accuracy is not None]
    x_max = _nice_max(max(costs, default=1.0) * 1.1)

    def x(seconds: float) -> float:
        return left + plot_w * seconds / x_max

    def y(value: float) -> float:
        return top + plot_h * (1 - max(0.0, min(1.0, value)))

    parts = [_open(width, height, "Accuracy against time per answer")]
    for tick in range(0, 101, 20):
        ty = y(tick / 100)
        parts.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{width - right}" y2="{ty:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick}%</text>')
    for i in range(6):
        value = x_max * i / 5
        tx = x(value)
        parts.append(f'<text x="{tx:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{value:g} s</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888"/>'
                 f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 34}" text-anchor="middle">'
                 "mean seconds per answer (retrieval, prompt and generation)</text>")
    for i, point in enumerate(points):
        if point.accuracy is None or point.seconds is None:
            continue
        px, acc = x(point.seconds), point.accuracy
        parts.append(f'<line x1="{px:.1f}" y1="{y(acc.low):.1f}" x2="{px:.1f}" y2="{y(acc.high):.1f}" '
                     f'stroke="{colour(i)}" stroke-width="2"/>'
                     f'<circle cx="{px:.1f}" cy="{y(acc.estimate):.1f}" r="6" fill="{colour(i)}">'
                     f"<title>{escape(point.label)}: {escape(acc.percent())}, "
                     f"{point.seconds:.1f} s per answer</title></circle>")
    for i, point in enumerate(points):
        ly = top + plot_h + axis + legend_row * i + 10
        parts.append(f'<circle cx="{left + 6}" cy="{ly}" r="5" fill="{colour(i)}"/>'
                     f'<text x="{left + 16}" y="{ly + 4}">{escape(point.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
            f"<title>{escape(title)}</title>")
