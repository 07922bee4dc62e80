"""When and where a pass applies (issue 23 point 2), set per template: the locations it is used
at, the days of the week and a time window, read in the visit's location's time zone, and a cap
of uses per day or per week (Monday to Sunday, by the visit's local date).

A window that ends before it starts crosses midnight and belongs to the day it starts: with
Fridays 22:00–02:00, a visit at 01:00 on Saturday is inside Friday's window. A sold pass keeps its
own copy of these rules from the sale (SPEC 5.2, `Pass.window_terms`): a later change of the
template never alters passes already sold. The copy holds the locations' ids, so checking a visit
reads nothing more from the database unless it has to count uses against a cap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from carnet.clinic.models import Location
from carnet.passes.models import Redemption

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Window:
    """A pass's place, days, hours and cap, as the template said at the sale."""

    location_ids: tuple[int, ...] = ()
    allowed_days: str = ""
    window_start: dt.time | None = None
    window_end: dt.time | None = None
    cap_uses: int | None = None
    cap_period: str = "week"

    def as_json(self) -> dict:
        hhmm = lambda t: None if t is None else f"{t:%H:%M}"  # noqa: E731
        return {
            "location_ids": list(self.location_ids),
            "days": self.allowed_days,
            "start": hhmm(self.window_start),
            "end": hhmm(self.window_end),
            "cap_uses": self.cap_uses,
            "cap_period": self.cap_period,
        }


def window_of_template(template) -> Window:
    """The template's rules now (one read of its locations): what a sale copies onto the pass."""
    return Window(
        location_ids=tuple(sorted(loc.pk for loc in template.allowed_locations.all())),
        allowed_days=template.allowed_days or "",
        window_start=template.window_start,
        window_end=template.window_end,
        cap_uses=template.cap_uses,
        cap_period=template.cap_period,
    )


def window_terms(template) -> dict:
    """The copy a sold pass keeps (Pass.window_terms)."""
    return window_of_template(template).as_json()


def window_of_pass(sold) -> Window:
    terms = sold.window_terms or {}
    at = lambda v: None if not v else dt.time.fromisoformat(v)  # noqa: E731
    return Window(
        location_ids=tuple(terms.get("location_ids") or ()),
        allowed_days=terms.get("days") or "",
        window_start=at(terms.get("start")),
        window_end=at(terms.get("end")),
        cap_uses=terms.get("cap_uses"),
        cap_period=terms.get("cap_period") or "week",
    )


def _days(rules) -> list[int]:
    return sorted({int(c) for c in rules.allowed_days or "" if c.isdigit() and int(c) < 7})


def window_text(rules) -> str:
    """The days and hours a template or Window covers, e.g. "Mon, Wed 06:00–09:00"."""
    days = _days(rules)
    day_part = "" if not days or len(days) == 7 else ", ".join(DAY_NAMES[d] for d in days)
    hour_part = ""
    if rules.window_start is not None and rules.window_end is not None:
        hour_part = f"{rules.window_start:%H:%M}–{rules.window_end:%H:%M}"
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


def window_refusal(
    sold, *, location, start: dt.datetime | None, visit_date: dt.date, visit_pk: int | None = None
) -> tuple[str, dict] | None:
    """(reason code, its sentence's fields) when the template's place, hours or cap rule out this
    visit; None when they allow it (or nothing is known of the visit's place and time)."""

    template = window_of_pass(sold)
    if location is not None and template.location_ids and location.pk not in template.location_ids:
        names = (
            Location.objects.filter(pk__in=template.location_ids)
            .order_by("name")
            .values_list("name", flat=True)
        )
        return "wrong_location", {"locations": ", ".join(names), "location": location.name}
    if start is not None and location is not None:
        local = start.astimezone(ZoneInfo(location.time_zone))
        if not _in_window(template, local):
            return "outside_hours", {
                "window": window_text(template),
                "when": f"{local:%a %H:%M}",
                "zone": location.time_zone,
            }
    if template.cap_uses:
        first = (
            visit_date
            if template.cap_period == "day"
            else visit_date - dt.timedelta(days=visit_date.weekday())
        )
        last = visit_date if template.cap_period == "day" else first + dt.timedelta(days=6)
        taken = (
            Redemption.objects.filter(
                sold_pass_id=sold.pk,
                visit_date__range=(first, last),
                status__in=(Redemption.Status.RESERVED, Redemption.Status.POSTED),
            )
            .exclude(visit_id=visit_pk)
            .count()
        )
        if taken >= template.cap_uses:
            span = (
                f"on {first:%a %Y-%m-%d}"
                if template.cap_period == "day"
                else f"in the week of {first:%a %Y-%m-%d} to {last:%a %Y-%m-%d}"
            )
            return (
                "weekly_cap" if template.cap_period == "week" else "daily_cap",
                {
                    "cap": "once" if template.cap_uses == 1 else f"{template.cap_uses} times",
                    "taken": taken,
                    "span": span,
                },
            )
    return None
