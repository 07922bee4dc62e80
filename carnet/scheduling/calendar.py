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

STEP = 5                      # minutes per grid row
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


def free_slots(free: list[tuple[dt.datetime, dt.datetime]], day: dt.date, zone: ZoneInfo) -> list[dict]:
    """The whole 15-minute slots (on the quarter hour, local time) inside the free intervals."""
    out = []
    for start, end in free:
        local = start.astimezone(zone)
        minute = -(-(local.hour * 60 + local.minute) // 15) * 15  # the next quarter hour
        t = dt.datetime.combine(day, dt.time(), tzinfo=zone) + dt.timedelta(minutes=minute)
        while t + SLOT <= end.astimezone(zone) and t.date() == day:
            out.append({"start": t.replace(tzinfo=None), **place(t, t + SLOT, day, zone)})
            t += SLOT
    return out


def window(columns: list[dict]) -> dict:
    """The rows shown: every shift, break and appointment, on whole half hours (default 08:00–18:00),
    and the half-hour labels of the time gutter."""
    first, last = 8 * 60 // STEP + 1, 18 * 60 // STEP + 1
    for col in columns:
        for item in col["blocks"]:
            first = min(first, item["row"])
            last = max(last, item["row"] + item["span"])
    first = (first - 1) // 6 * 6 + 1   # back to the half hour
    last = min(DAY_ROWS + 1, -(-(last - 1) // 6) * 6 + 1)
    labels = [{"time": dt.time((r - 1) * STEP // 60, (r - 1) * STEP % 60), "row": r}
              for r in range(first, last, 6)]
    return {"first": first, "last": last, "labels": labels}
