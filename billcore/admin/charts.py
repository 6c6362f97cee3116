"""Charts drawn on the server as SVG: no script, no CDN, readable offline and printable.

A chart is a stacked bar per day; each page that shows one also shows the same figures as a table
(for screen readers and for reading exact values), so the SVG itself is one labelled image.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 36, 6, 12, 30
# colours distinguishable by people with the common colour-vision deficiencies, 3:1 against white
PALETTE = ["#1b7a43", "#5b6577", "#b3261e", "#2457d6", "#8a4fbf", "#b35c00", "#0f7c86", "#7a5a00"]


@dataclass
class Series:
    """One colour of the stacked bars: its label, colour and a value per day."""

    label: str
    color: str
    values: list[int]


def _nice_max(value: int) -> int:
    """The top of the y axis: the smallest of 1, 2, 4, 6, 8, 10, 20, 40... at or above ``value`` (even from 2
    on, so the middle grid line is a whole number)."""
    step = 1
    while True:
        for m in (1, 2, 4, 6, 8):
            if step * m >= value:
                return max(1, step * m)
        step *= 10


def stacked_bars(days: list[date], series: list[Series], title: str, day_format) -> Markup:
    """An SVG of one stacked bar per day; ``title`` is its accessible name, ``day_format`` writes an axis
    label for a day."""
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar = max(2.0, slot * 0.7)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg" font-size="14" font-family="system-ui, sans-serif">']
    for frac in ((0, 0.5, 1) if top > 1 else (0, 1)):  # grid lines and their values
        y = TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5d9e0"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#4a5161">{int(top * frac)}</text>')
    for i, day in enumerate(days):
        x = LEFT + slot * i + (slot - bar) / 2
        y = TOP + plot_h
        for s in series:
            value = s.values[i]
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{s.color}">'
                         f'<title>{escape(day_format(day))}: {escape(s.label)} {value}</title></rect>')
        if (len(days) - 1 - i) % 7 == 0:  # a label every week, ending today
            last = i == len(days) - 1  # today's label ends at the bar, inside the picture
            parts.append(f'<text x="{x + (bar if last else bar / 2):.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="{"end" if last else "middle"}" fill="#4a5161">{escape(day_format(day))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
