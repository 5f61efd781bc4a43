"""Tiny inline SVG line and dot charts for the status page: no JavaScript, no build step.

A chart is a list of series drawn on shared axes; each series is one ``<path>`` (or a
group of ``<circle>`` dots) whose ``data-points`` attribute says how many values it
carries, so a browser test can check that the page drew data rather than empty frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 380
HEIGHT = 170
PAD_LEFT = 48
PAD_RIGHT = 10
PAD_TOP = 22
PAD_BOTTOM = 20


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    xs: Sequence[float]
    ys: Sequence[float]
    dots: bool = False
    dashed: bool = False


def chart(title: str, series: Sequence[Series], kind: str, y_format: str = "{:.3g}") -> str:
    """An SVG chart of ``series``; ``kind`` names it for tests and styling."""
    points = [
        (x, y)
        for s in series
        for x, y in zip(s.xs, s.ys, strict=True)
        if math.isfinite(x) and math.isfinite(y)
    ]
    head = (
        f'<svg class="chart" data-chart="{escape(kind)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f'<text x="{PAD_LEFT}" y="14" class="title">{escape(title)}</text>'
    )
    if not points:
        return head + f'<text x="{PAD_LEFT}" y="{HEIGHT // 2}">no data yet</text></svg>'
    x_low, x_high = _span([p[0] for p in points])
    y_low, y_high = _span([p[1] for p in points])

    def sx(x: float) -> float:
        return PAD_LEFT + (x - x_low) / (x_high - x_low) * (WIDTH - PAD_LEFT - PAD_RIGHT)

    def sy(y: float) -> float:
        return (
            HEIGHT - PAD_BOTTOM - (y - y_low) / (y_high - y_low) * (HEIGHT - PAD_TOP - PAD_BOTTOM)
        )

    body = [_frame(y_low, y_high, y_format)]
    legend_x = WIDTH - PAD_RIGHT
    for s in reversed(series):
        if s.name:
            body.append(
                f'<text x="{legend_x}" y="{HEIGHT - 5}" text-anchor="end" fill="{s.color}">'
                f"{escape(s.name)}</text>"
            )
            legend_x -= 7 * len(s.name) + 10
        finite = [
            (sx(x), sy(y))
            for x, y in zip(s.xs, s.ys, strict=True)
            if math.isfinite(x) and math.isfinite(y)
        ]
        body.append(_draw(s, finite))
    return head + "".join(body) + "</svg>"


def _draw(series: Series, points: list[tuple[float, float]]) -> str:
    attrs = f'class="series" data-series="{escape(series.name)}" data-points="{len(points)}"'
    if series.dots:
        dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8"/>' for x, y in points)
        return f'<g {attrs} fill="{series.color}" fill-opacity="0.55">{dots}</g>'
    d = " ".join(f"{'L' if i else 'M'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    dash = ' stroke-dasharray="4 3"' if series.dashed else ""
    return f'<path {attrs} d="{d}" fill="none" stroke="{series.color}" stroke-width="1.6"{dash}/>'


def _frame(y_low: float, y_high: float, y_format: str) -> str:
    bottom, right = HEIGHT - PAD_BOTTOM, WIDTH - PAD_RIGHT
    return (
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{right - PAD_LEFT}" '
        f'height="{bottom - PAD_TOP}" fill="none" stroke="#ccc"/>'
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">'
        f"{escape(y_format.format(y_high))}</text>"
        f'<text x="{PAD_LEFT - 4}" y="{bottom}" text-anchor="end">'
        f"{escape(y_format.format(y_low))}</text>"
    )


def _span(values: list[float]) -> tuple[float, float]:
    """The axis range; a flat series gets a small margin so it is drawn mid-chart."""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        margin = abs(low) * 0.05 or 1.0
        return low - margin, high + margin
    return low, high
