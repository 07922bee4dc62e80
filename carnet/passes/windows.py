"""When and where a pass applies (issue 23 point 2), set per template: the locations it is used
at, the days of the week and a time window, read in the visit's location's time zone, and a cap
of uses per day or per week (Monday to Sunday, by the visit's local date).

A window that ends before it starts crosses midnight and belongs to the day it starts: with
Fridays 22:00–02:00, a visit at 01:00 on Saturday is inside Friday's window. The rules are read
from the template at the time of the visit, like Explain reads them.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _days(template) -> list[int]:
    return sorted({int(c) for c in template.allowed_days or "" if c.isdigit() and int(c) < 7})


def window_text(template) -> str:
    """The days and hours a template covers, e.g. "Mon, Wed 06:00–09:00"."""
    days = _days(template)
    day_part = "" if not days or len(days) == 7 else ", ".join(DAY_NAMES[d] for d in days)
    hour_part = ""
    if template.window_start is not None and template.window_end is not None:
        hour_part = f"{template.window_start:%H:%M}–{template.window_end:%H:%M}"
    return " ".join(p for p in (day_part, hour_part) if p) or "any time"


def _in_window(template, local: dt.datetime) -> bool:
    start, end = template.window_start, template.window_end
    day, at = local.weekday(), local.time()
    if start is not None and end is not None:
        if start < end:
            if not start <= at < end:
                return False
        elif at >= start:
            pass  # the evening part of a window crossing midnight: today's
        elif at < end:
            day = (day - 1) % 7  # the early-morning part belongs to the day before
        else:
            return False
    days = _days(template)
    return not days or day in days


def window_refusal(sold, *, location, start: dt.datetime | None, visit_date: dt.date,
                   visit_pk: int | None = None) -> tuple[str, dict] | None:
    """(reason code, its sentence's fields) when the template's place, hours or cap rule out this
    visit; None when they allow it (or nothing is known of the visit's place and time)."""
    from .models import Redemption

    template = sold.template
    if location is not None:
        allowed = list(template.allowed_locations.all())
        if allowed and location.pk not in {loc.pk for loc in allowed}:
            return "wrong_location", {"locations": ", ".join(loc.name for loc in allowed),
                                      "location": location.name}
    if start is not None and location is not None:
        local = start.astimezone(ZoneInfo(location.time_zone))
        if not _in_window(template, local):
            return "outside_hours", {"window": window_text(template), "when": f"{local:%a %H:%M}",
                                     "zone": location.time_zone}
    if template.cap_uses:
        first = visit_date if template.cap_period == "day" else visit_date - dt.timedelta(days=visit_date.weekday())
        last = visit_date if template.cap_period == "day" else first + dt.timedelta(days=6)
        taken = (Redemption.objects.filter(sold_pass_id=sold.pk, visit_date__range=(first, last),
                                           status__in=(Redemption.Status.RESERVED, Redemption.Status.POSTED))
                 .exclude(visit_id=visit_pk).count())
        if taken >= template.cap_uses:
            span = f"on {first:%a %Y-%m-%d}" if template.cap_period == "day" else \
                f"in the week of {first:%a %Y-%m-%d} to {last:%a %Y-%m-%d}"
            return ("weekly_cap" if template.cap_period == "week" else "daily_cap",
                    {"cap": "once" if template.cap_uses == 1 else f"{template.cap_uses} times", "taken": taken,
                     "span": span})
    return None
