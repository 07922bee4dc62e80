"""The server-drawn charts read on their own: axes, a zero line, tick and value labels, and a
negative value drawn below zero (not as a positive bar)."""

import re

import pytest

from carnet.reports.charts import bar_chart, line_chart


def _bars(svg: str) -> list[tuple[float, float]]:
    return [
        (float(y), float(h))
        for y, h in re.findall(
            r'<rect class="bar[^"]*" x="[^"]+" y="([^"]+)" '
            r'width="[^"]+" height="([^"]+)"',
            svg,
        )
    ]


def _zero(svg: str) -> float:
    return float(re.search(r'class="axis zero" x1="[^"]+" y1="([^"]+)"', svg).group(1))


def test_bars_have_axes_values_and_negatives_below_zero():
    svg = bar_chart(
        [("Mon", 120.5), ("Tue", -40), ("Wed", 0)], title="Net received per day", y_title="CAD"
    )
    zero = _zero(svg)
    (mon_y, mon_h), (tue_y, tue_h), (_, wed_h) = _bars(svg)
    assert abs(mon_y + mon_h - zero) < 0.2 and mon_y < zero  # up from zero
    assert abs(tue_y - zero) < 0.2 and tue_h > 0  # down from zero
    assert wed_h == 0 and mon_h / tue_h == pytest.approx(120.5 / 40, rel=1e-2)
    for text in (">120.50<", ">-40<", ">0<", ">Mon<", ">Tue<", ">CAD<"):
        assert text in svg
    assert 'class="bar negative"' in svg and 'class="axis"' in svg


def test_a_line_labels_its_ends_and_its_range():
    svg = line_chart(
        [("2026-05-01", 800.0), ("2026-05-31", 460.0)], title="Deferred revenue", y_title="CAD"
    )
    assert ">800<" in svg and ">460<" in svg and ">2026-05-01<" in svg and ">2026-05-31<" in svg
    assert "axis zero" in svg
