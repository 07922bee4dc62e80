"""Reads: one appointment, a day's list, and practitioner availability.

Availability is worked out in the location's time zone: a shift "09:00–17:00 Sunday" is turned
into real instants for that date with zoneinfo, so a daylight-saving day yields a 23- or 25-hour
day's worth of correct instants; booked appointments are then cut out in UTC.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects

from carnet.clinic.models import Location, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import clock, statements
from carnet.core.errors import NotFound
from carnet.people.models import Shift, StaffMember

from .access import schedule_require, schedule_scope
from .coverage import passes
from .models import Appointment, Break, Status, Visit

_APPOINTMENTS = Appointment.objects.select_related(
    "treatment", "practitioner", "location"
).prefetch_related("visits__patient")


def treatments_offered(practitioner: StaffMember) -> QuerySet[Treatment]:
    """The active treatments `practitioner` offers: those ticked on their profile,
    or every one if none is."""
    everything = Treatment.objects.filter(is_active=True).order_by("name")
    chosen = everything.filter(practitioners=practitioner)
    return chosen if chosen.exists() else everything


def appointment_get(*, actor, pk: int, bare: bool = False) -> Appointment:
    """One appointment `actor` may work on; `bare` reads only its row (a service that locks and
    reloads it needs no more)."""
    appointment = (Appointment.objects if bare else _APPOINTMENTS).filter(pk=pk).first()
    if appointment is None:
        raise NotFound(f"No appointment with id {pk}.")
    schedule_require(
        actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id
    )
    return appointment


def with_visits(appointment: Appointment, known: list[Visit] | None = None) -> Appointment:
    """An appointment a service has just changed (and loaded with its treatment, practitioner and
    location), with its visits for the response: one query instead of reading it all again,
    or none when the service passes the visits it read and changed (`known`: all of them, with
    their patients, in the model's order)."""
    if known is not None:
        statements.prefetched(appointment, "visits", list(known))
        return appointment
    prefetch_related_objects(
        [appointment],
        Prefetch("visits", queryset=Visit.objects.select_related("patient")),
    )
    return appointment


def _day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)


def calendar_appointments(
    *, actor, start: dt.datetime, end: dt.datetime, location: Location
) -> list[Appointment]:
    """The schedule page's blocks: the appointments `actor` may see starting in [start, end) at
    `location`, not cancelled, with `covered` and `names` (the patients still in it, as one text).
    Three queries however many appointments; no visit objects are built (a week holds 400)."""
    qs = Appointment.objects.filter(
        schedule_scope(actor), location=location, start__gte=start, start__lt=end
    ).exclude(status=Status.CANCELLED)
    names: dict[int, list[str]] = {}
    for pk, first, preferred, last in (
        Visit.objects.filter(appointment__in=qs.values("pk"))
        .exclude(status=Status.CANCELLED)
        .order_by("booked_at", "pk")
        .values_list(
            "appointment_id", "patient__first_name", "patient__preferred_name", "patient__last_name"
        )
    ):
        names.setdefault(pk, []).append(
            f"{first} ({preferred}) {last}" if preferred else f"{first} {last}"
        )
    out = list(with_pass_cover(qs.order_by("start", "pk")))
    # The few treatments and practitioners read once each, not joined into 400 rows.
    treatments = Treatment.objects.in_bulk({a.treatment_id for a in out})
    practitioners = StaffMember.objects.in_bulk({a.practitioner_id for a in out})
    for a in out:
        a.treatment, a.practitioner = treatments[a.treatment_id], practitioners[a.practitioner_id]
        a.names = ", ".join(names.get(a.pk, ()))
    return out


def appointments_list(
    *,
    actor,
    day: dt.date | None = None,
    location: Location | None = None,
    practitioner: StaffMember | None = None,
) -> QuerySet[Appointment]:
    """The appointments `actor` may see starting on `day` (the location's day,
    else the clinic's)."""
    scope = schedule_scope(actor)
    zone = ZoneInfo(location.time_zone if location else clinic_get().time_zone)
    day = day or clock.today(zone)
    start, end = _day_bounds(day, zone)
    qs = _APPOINTMENTS.filter(scope, start__gte=start, start__lt=end)
    if location is not None:
        qs = qs.filter(location=location)
    if practitioner is not None:
        qs = qs.filter(practitioner=practitioner)
    return qs


Interval = tuple[dt.datetime, dt.datetime]


def _subtract(free: list[Interval], busy: Interval) -> list[Interval]:
    out = []
    for start, end in free:
        if busy[1] <= start or busy[0] >= end:
            out.append((start, end))
            continue
        if start < busy[0]:
            out.append((start, busy[0]))
        if busy[1] < end:
            out.append((busy[1], end))
    return out


def availability(
    *,
    actor,
    practitioner: StaffMember,
    day: dt.date | None = None,
    location: Location | None = None,
) -> list[tuple[Location, Interval]]:
    """Free intervals (aware, in the location's time zone) per location for the practitioner on
    `day`: their shifts there minus their breaks and every appointment they have (at any location)
    that is not cancelled."""
    shifts = (
        Shift.objects.filter(staff=practitioner).select_related("location").order_by("start_time")
    )
    if location is not None:
        shifts = shifts.filter(location=location)
    # The actor must be allowed at every location asked about (none known:
    # only own or all-locations staff).
    places = (
        {location.pk}
        if location is not None
        else (
            {s.location_id for s in shifts}
            | set(practitioner.locations.values_list("pk", flat=True))
            or {None}
        )
    )
    for loc_id in places:
        schedule_require(actor, practitioner_id=practitioner.pk, location_id=loc_id)
    return free_intervals(practitioner=practitioner, day=day, shifts=shifts)


def free_intervals(
    *, practitioner: StaffMember, day: dt.date | None, shifts
) -> list[tuple[Location, Interval]]:
    """The unchecked core of availability(): `shifts` minus the practitioner's breaks and
    appointments on `day`. Callers check access (availability) or show only what the public may
    see (online booking)."""
    out = []
    for shift in shifts:
        zone = ZoneInfo(shift.location.time_zone)
        local_day = day or clock.today(zone)
        if shift.weekday != local_day.weekday():
            continue
        # combine() + astimezone: a wall time skipped by DST maps to the instant just after the gap.
        start = dt.datetime.combine(local_day, shift.start_time, tzinfo=zone).astimezone(dt.UTC)
        end = dt.datetime.combine(local_day, shift.end_time, tzinfo=zone).astimezone(dt.UTC)
        free = [(start, end)]
        busy = (
            Appointment.objects.filter(practitioner=practitioner, start__lt=end, end__gt=start)
            .exclude(status=Status.CANCELLED)
            .values_list("start", "end")
        )
        breaks = Break.objects.filter(
            practitioner=practitioner, start__lt=end, end__gt=start
        ).values_list("start", "end")
        for interval in [*busy, *breaks]:
            free = _subtract(free, interval)
        out += [
            (shift.location, (a.astimezone(zone), b.astimezone(zone))) for a, b in free if b > a
        ]
    return out


def free_grid(*, location: Location, days: list[dt.date]) -> tuple[dict[int, StaffMember], dict]:
    """The schedule page's availability in a fixed handful of queries however many practitioners
    and days: the practitioners with a shift at `location` on any of `days`, and per (practitioner
    pk, day) their free intervals there (the same rule as free_intervals: shifts minus breaks and
    every appointment they have anywhere, not cancelled). Unchecked: the page checks access."""
    zone = ZoneInfo(location.time_zone)
    weekdays = {d.weekday() for d in days}
    shifts = [
        s
        for s in Shift.objects.filter(
            location=location,
            weekday__in=weekdays,
            staff__is_practitioner=True,
            staff__is_active=True,
        )
        .select_related("staff")
        .order_by("start_time")
    ]
    people = {s.staff_id: s.staff for s in shifts}
    span_start = dt.datetime.combine(days[0], dt.time(), tzinfo=zone)
    span_end = dt.datetime.combine(
        days[-1] + dt.timedelta(days=2), dt.time(), tzinfo=zone
    )  # a shift past midnight
    busy: dict[int, list[Interval]] = {}
    appointments = (
        Appointment.objects.filter(
            practitioner_id__in=people, start__lt=span_end, end__gt=span_start
        )
        .exclude(status=Status.CANCELLED)
        .values_list("practitioner_id", "start", "end")
    )
    pauses = Break.objects.filter(
        practitioner_id__in=people, start__lt=span_end, end__gt=span_start
    ).values_list("practitioner_id", "start", "end")
    for pk, start, end in [*appointments, *pauses]:
        busy.setdefault(pk, []).append((start, end))
    grid: dict[tuple[int, dt.date], list[Interval]] = {}
    for day in days:
        for shift in shifts:
            if shift.weekday != day.weekday():
                continue
            start = dt.datetime.combine(day, shift.start_time, tzinfo=zone).astimezone(dt.UTC)
            end = dt.datetime.combine(day, shift.end_time, tzinfo=zone).astimezone(dt.UTC)
            free = [(start, end)]
            for interval in busy.get(shift.staff_id, ()):
                if interval[0] < end and interval[1] > start:
                    free = _subtract(free, interval)
            grid.setdefault((shift.staff_id, day), []).extend(
                (a.astimezone(zone), b.astimezone(zone)) for a, b in free if b > a
            )
    return people, grid


def breaks_for(*, actor, practitioner: StaffMember, day: dt.date | None = None) -> list[Break]:
    """The practitioner's breaks (touching `day` in UTC, if given) that `actor` may see."""
    items = Break.objects.filter(practitioner=practitioner).filter(schedule_scope(actor))
    if day is not None:
        items = items.filter(start__date__lte=day, end__date__gte=day)
    return list(items)


def with_pass_cover(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """Annotate `covered`: some visit has a live (reserved or used) pass redemption. One subquery,
    so the schedule grid's package icon costs no query per appointment."""
    return passes.with_cover(appointments)


def appointments_today(*, actor, locations: list[Location]) -> list[Appointment]:
    """The appointments `actor` may see starting today at each of `locations`, "today" being each
    location's own day (its time zone), not cancelled, with `covered` (a pass covers it). One query
    for the rows and one for their patients, however many locations and appointments."""

    window = Q(pk__in=[])
    for location in locations:
        start, end = _day_bounds(
            clock.today(ZoneInfo(location.time_zone)), ZoneInfo(location.time_zone)
        )
        window |= Q(location=location, start__gte=start, start__lt=end)
    qs = _APPOINTMENTS.filter(schedule_scope(actor)).filter(window).exclude(status=Status.CANCELLED)
    return list(
        with_pass_cover(qs.order_by("location__name", "practitioner__display_name", "start", "pk"))
    )
