"""Small SVG charts drawn on the server (no CDN, no JavaScript): bars for counts per period, a
line for a balance over time. Each returns markup safe to put in a template."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import mark_safe

WIDTH, HEIGHT, PAD = 640, 200, 28


def _scale(values: list[float]) -> float:
    top = max([abs(v) for v in values] + [1])
    return (HEIGHT - 2 * PAD) / top


def bar_chart(points: list[tuple[str, float]], *, title: str) -> str:
    """Vertical bars, one per (label, value)."""
    if not points:
        return ""
    scale = _scale([v for _, v in points])
    step = (WIDTH - 2 * PAD) / len(points)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for i, (label, value) in enumerate(points):
        h = abs(value) * scale
        x = PAD + i * step + step * 0.1
        y = HEIGHT - PAD - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}">'
                     f"<title>{escape(label)}: {escape(str(value))}</title></rect>")
        if len(points) <= 16 or i % max(1, len(points) // 12) == 0:
            parts.append(f'<text x="{x + step * 0.4:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def line_chart(points: list[tuple[str, float]], *, title: str) -> str:
    """A line through (label, value) points, e.g. a liability's balance at each period end."""
    if not points:
        return ""
    scale = _scale([v for _, v in points])
    step = (WIDTH - 2 * PAD) / max(len(points) - 1, 1)
    coords = [(PAD + i * step, HEIGHT - PAD - v * scale) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>", f'<polyline fill="none" points="{path}"/>']
    for (x, y), (label, value) in zip(coords, points):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(label)}: {escape(str(value))}</title></circle>')
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}">{escape(points[0][0])}</text>')
    parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{escape(points[-1][0])}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
