"""Geometry for the overview's revenue/cost/profit chart, drawn as inline SVG by the
template: no script, no external asset."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..money import CENT, format_amount
from ..services.stats import Figures

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28  # margins for the axis labels
TICKS = 4


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str
    points: str  # an SVG polyline `points` attribute


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int  # x of the plot's right edge
    top: int
    bottom: int  # y of the plot's bottom edge
    zero_y: float
    series: list[Series]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    rows: list[tuple[dt.date, int, int, int]]  # (day, revenue, cost, profit) for the table


def _step(span: int) -> int:
    """A round tick step (1, 2 or 5 × a power of ten, in whole cents) covering `span`."""
    raw = max(span / TICKS, CENT)
    step = CENT
    while True:
        for factor in (1, 2, 5):
            if step * factor >= raw:
                return step * factor
        step *= 10


def money_chart(days: list[dt.date], daily: dict[dt.date, Figures]) -> Chart:
    rows = [(d, daily[d].revenue, daily[d].cost, daily[d].profit) for d in days]
    values = [v for row in rows for v in row[1:]]
    smallest, largest = min(values + [0]), max(values + [0])
    step = _step(largest - smallest)
    low = (smallest // step) * step  # rounded outwards to whole steps, zero included
    high = max(-(-largest // step) * step, low + step)

    plot_right, plot_bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    x_span = max(len(days) - 1, 1)

    def x(index: int) -> float:
        return round(LEFT + (plot_right - LEFT) * index / x_span, 1)

    def y(value: int) -> float:
        return round(plot_bottom - (plot_bottom - TOP) * (value - low) / (high - low), 1)

    series = [
        Series(name, css, " ".join(f"{x(i)},{y(row[col])}" for i, row in enumerate(rows)))
        for name, css, col in (
            ("Revenue", "revenue", 1),
            ("Upstream cost", "cost", 2),
            ("Profit", "profit", 3),
        )
    ]
    y_ticks = [(y(v), format_amount(v)) for v in range(low, high + 1, step)]
    x_ticks = [
        (x(i), day.strftime("%d %b"))
        for i, day in enumerate(days)
        if i % 7 == (len(days) - 1) % 7  # every 7th day, ending today
    ]
    return Chart(
        WIDTH, HEIGHT, LEFT, plot_right, TOP, plot_bottom, y(0), series, y_ticks, x_ticks, rows
    )
