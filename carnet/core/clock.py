"""The one source of "now". Tests freeze it; the clinic's time zone decides "today". And the
calendar's month arithmetic every pass term counts in (expiry, instalments, cycles)."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
from zoneinfo import ZoneInfo

from django.utils import timezone

_frozen: dt.datetime | None = None


def now() -> dt.datetime:
    return _frozen if _frozen is not None else timezone.now()


def today(tz: str | dt.tzinfo) -> dt.date:
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return now().astimezone(zone).date()


@contextlib.contextmanager
def frozen(at: dt.datetime):
    """Freeze now() at an aware datetime for the duration of the block."""
    global _frozen
    if at.tzinfo is None:
        raise ValueError("clock.frozen needs an aware datetime")
    previous, _frozen = _frozen, at
    try:
        yield
    finally:
        _frozen = previous


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day of the month `months` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(
        year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1])
    )
