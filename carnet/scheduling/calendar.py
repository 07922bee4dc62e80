"""The schedule as a calendar (issue 20): where each block sits in a practitioner's column.

A column is a CSS grid of 5-minute rows numbered from local midnight (row 1 = 00:00, row 289 =
24:00), so a block's place depends only on its own wall-clock times: the panel can redraw one
block (hx-swap-oob) without knowing the rest of the grid. The page shows only the rows between
the first and last times needed; rows outside are collapsed (carnet.js sets the row sizes and each
block's rows from its data-row and data-span: the CSP allows no inline styles).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

STEP = 5  # minutes per grid row
SLOT = dt.timedelta(minutes=15)  # a bookable free slot
DAY_ROWS = 24 * 60 // STEP


def _minute(when: dt.datetime, day: dt.date, zone: ZoneInfo) -> int:
    """Minutes since the local midnight of `day` (clamped to the day)."""
    local = when.astimezone(zone)
    if local.date() < day:
        return 0
    if local.date() > day:
        return 24 * 60
    return local.hour * 60 + local.minute


def place(start: dt.datetime, end: dt.datetime, day: dt.date, zone: ZoneInfo) -> dict:
    """{row, span}: the first row and number of 5-minute rows of [start, end) on `day`."""
    first, last = _minute(start, day, zone), _minute(end, day, zone)
    row = first // STEP + 1
    span = max(1, -(-last // STEP) + 1 - row)
    return {"row": row, "span": span}


def place_appointment(appointment, zone: ZoneInfo) -> None:
    """Set grid_row and grid_span on an appointment (its own local day)."""
    day = appointment.start.astimezone(zone).date()
    spot = place(appointment.start, appointment.end, day, zone)
    appointment.grid_row, appointment.grid_span = spot["row"], spot["span"]


def free_slots(
    free: list[tuple[dt.datetime, dt.datetime]], day: dt.date, zone: ZoneInfo
) -> list[dict]:
    """The whole 15-minute slots (on the quarter hour, local time) inside the free intervals.
    Worked in local minutes of the day, with the text made here rather than by template filters:
    a week view has some 1,500 slots."""
    out = []
    step = SLOT.seconds // 60
    on = f"{day:%a} {day.day} {day:%b}"
    for start, end in free:
        first, last = _minute(start, day, zone), _minute(end, day, zone)
        minute = -(-first // step) * step  # the next quarter hour
        while minute + step <= last and minute < 24 * 60:
            hhmm = f"{minute // 60:02d}:{minute % 60:02d}"
            out.append(
                {
                    "start": dt.datetime.combine(day, dt.time(minute // 60, minute % 60)),
                    "iso": f"{day.isoformat()}T{hhmm}",
                    "time": hhmm,
                    "label": f"{on} {hhmm}",
                    "row": minute // STEP + 1,
                    "span": step // STEP,
                }
            )
            minute += step
    return out


def window(columns: list[dict]) -> dict:
    """The rows shown: every shift, break and appointment, on whole half hours (default
    08:00–18:00), and the half-hour labels of the time gutter."""
    first, last = 8 * 60 // STEP + 1, 18 * 60 // STEP + 1
    for col in columns:
        for item in col["blocks"]:
            first = min(first, item["row"])
            last = max(last, item["row"] + item["span"])
    first = (first - 1) // 6 * 6 + 1  # back to the half hour
    last = min(DAY_ROWS + 1, -(-(last - 1) // 6) * 6 + 1)
    labels = [
        {"time": dt.time((r - 1) * STEP // 60, (r - 1) * STEP % 60), "row": r}
        for r in range(first, last, 6)
    ]
    return {"first": first, "last": last, "labels": labels}


def free_links(slots: list[dict], *, book_url: str, who: str) -> SafeString:
    """The free slots of one column as links that open the booking form in the panel (htmx), made
    here in one pass rather than by the template: a week view has some 1,500 of them."""
    url, name = escape(book_url), escape(who)
    return mark_safe(
        "".join(
            f'<a class="cal-free" data-row="{s["row"]}" data-span="{s["span"]}" '
            f'href="{url}&amp;start={s["iso"]}" hx-get="{url}&amp;start={s["iso"]}" '
            f'hx-target="#panel" aria-label="Book {name} at {s["label"]}">'
            f"{s['time']}</a>"
            for s in slots
        )
    )


def appointment_block(a, *, names: str, url: str, oob: bool = False) -> SafeString:
    """An appointment's block on the calendar (`a` placed by place_appointment, with `covered`):
    the schedule draws some 400 a week, and the panel redraws one after a change (`oob`)."""
    covered = " covered" if getattr(a, "covered", False) else ""
    icon = (
        (
            '<span class="tag pass-icon" role="img" title="Covered by a package" '
            f'aria-label="Covered by a package" data-testid="covered-{a.pk}">Pass</span> '
        )
        if covered
        else ""
    )
    swap = ' hx-swap-oob="true"' if oob else ""
    return mark_safe(
        f'<a id="appt-{a.pk}" class="appt status-{a.status}{covered}" data-row="{a.grid_row}" '
        f'data-span="{a.grid_span}" href="{url}" hx-get="{url}" hx-target="#panel" '
        f'data-testid="appointment-{a.pk}"{swap}>'
        f"<strong>{escape(names)}</strong> {icon}<span>{escape(a.treatment.name)}</span> "
        f'<span class="tag status-{a.status}">{escape(a.get_status_display())}</span></a>'
    )


def column_body(col: dict, *, oob: bool = False) -> SafeString:
    """One column's body: its free slots, breaks and appointment blocks (`col` from the schedule
    view). Made here rather than by a template include: a week view has a hundred columns; the
    panel redraws one after booking (`oob`)."""
    pauses = "".join(
        f'<div class="cal-break" data-row="{b["row"]}" data-span="{b["span"]}">'
        f"Break {b['local_start']:%H:%M}–{b['local_end']:%H:%M}"
        f"{': ' + escape(b['item'].reason) if b['item'].reason else ''}</div>"
        for b in col["breaks"]
    )
    swap = ' hx-swap-oob="true"' if oob else ""
    return mark_safe(
        f'<div class="cal-body" id="col-{col["practitioner"].pk}-{col["day"].isoformat()}"{swap}>'
        f"{col['free_links']}{pauses}{''.join(a.block for a in col['appointments'])}</div>"
    )
