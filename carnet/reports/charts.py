"""Small SVG charts drawn on the server (no CDN, no JavaScript): bars for amounts per period, a
line for a balance over time. Each has its axes, a zero line, labelled ticks and the values, so it
reads on its own; a negative value is drawn below zero. Each returns markup safe for a template."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import mark_safe

from carnet.core.money import exponent, major

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 18, 34  # room for the y ticks, the values and the x labels


def _number(value: float) -> str:
    """12,345 or 12,345.67: thousands grouped, cents only when there are some."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def in_currency(points: list[tuple[str, int]], currency: str) -> list[tuple[str, float]]:
    """Minor-unit amounts as the currency's major units (1250 -> 12.5), for a chart's values."""
    places = exponent(currency)
    return [(label, float(major(minor, places))) for label, minor in points]


class _Frame:
    """The plotting area and the value → y mapping, zero included in the range."""

    def __init__(self, values: list[float]):
        self.low, self.high = min([0.0] + values), max([0.0] + values)
        if self.low == self.high:
            self.high = 1.0
        self.height = HEIGHT - TOP - BOTTOM

    def y(self, value: float) -> float:
        return TOP + (self.high - value) / (self.high - self.low) * self.height

    def axes(self, y_title: str) -> list[str]:
        zero = self.y(0)
        parts = [
            f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>',
            f'<line class="axis zero" x1="{LEFT}" y1="{zero:.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{zero:.1f}"/>',
        ]
        for value in sorted({self.low, 0.0, self.high}):
            y = self.y(value)
            parts.append(
                f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                f'text-anchor="end">{_number(value)}</text>'
            )
        if y_title:
            parts.append(f'<text class="axis-title" x="4" y="{TOP - 6}">{escape(y_title)}</text>')
        return parts


def _open(title: str) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]


def bar_chart(points: list[tuple[str, float]], *, title: str, y_title: str = "") -> str:
    """Vertical bars, one per (label, value), up from zero or down below it, each with its value."""
    if not points:
        return ""
    frame = _Frame([v for _, v in points])
    step = (WIDTH - LEFT - RIGHT) / len(points)
    zero = frame.y(0)
    labelled = len(points) <= 16
    parts = _open(title) + frame.axes(y_title)
    for i, (label, value) in enumerate(points):
        x = LEFT + i * step + step * 0.1
        top, bottom = sorted((frame.y(value), zero))
        css = "bar negative" if value < 0 else "bar"
        parts.append(
            f'<rect class="{css}" x="{x:.1f}" y="{top:.1f}" width="{step * 0.8:.1f}" '
            f'height="{bottom - top:.1f}"><title>{escape(label)}: {_number(value)}</title></rect>'
        )
        centre = x + step * 0.4
        if (
            labelled
        ):  # the value just outside the bar's end: above a positive bar, below a negative one
            y = top - 4 if value >= 0 else bottom + 12
            parts.append(
                f'<text class="value" x="{centre:.1f}" y="{y:.1f}" '
                f'text-anchor="middle">{_number(value)}</text>'
            )
        if labelled or i % max(1, len(points) // 12) == 0:
            parts.append(
                f'<text class="label" x="{centre:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def line_chart(points: list[tuple[str, float]], *, title: str, y_title: str = "") -> str:
    """A line through (label, value) points, e.g. a liability's balance at each period end; the
    first and last points carry their value."""
    if not points:
        return ""
    frame = _Frame([v for _, v in points])
    step = (WIDTH - LEFT - RIGHT) / max(len(points) - 1, 1)
    coords = [(LEFT + i * step, frame.y(v)) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts = _open(title) + frame.axes(y_title) + [f'<polyline fill="none" points="{path}"/>']
    for (x, y), (label, value) in zip(coords, points):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(label)}: '
            f"{_number(value)}</title></circle>"
        )
    for (x, y), (label, value), anchor in (
        (coords[0], points[0], "start"),
        (coords[-1], points[-1], "end"),
    ):
        parts.append(
            f'<text class="value" x="{x:.1f}" y="{y - 6:.1f}" '
            f'text-anchor="{anchor}">{_number(value)}</text>'
        )
        parts.append(
            f'<text class="label" x="{x:.1f}" y="{HEIGHT - 12}" '
            f'text-anchor="{anchor}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
