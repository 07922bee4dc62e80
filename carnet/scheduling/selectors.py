"""Reads: one appointment, a day's list, and practitioner availability.

Availability is worked out in the location's time zone: a shift "09:00–17:00 Sunday" is turned
into real instants for that date with zoneinfo, so a daylight-saving day yields a 23- or 25-hour
day's worth of correct instants; booked appointments are then cut out in UTC.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.db.models import Prefetch, QuerySet, prefetch_related_objects

from carnet.clinic.models import Location
from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.errors import NotFound
from carnet.people.models import Shift, StaffMember

from .access import schedule_require, schedule_scope
from .models import Appointment, AppointmentPatient, Break, Status

_APPOINTMENTS = Appointment.objects.select_related("treatment", "practitioner", "location").prefetch_related(
    "participants__patient")


def appointment_get(*, actor, pk: int, bare: bool = False) -> Appointment:
    """One appointment `actor` may work on; `bare` reads only its row (a service that locks and
    reloads it needs no more)."""
    appointment = (Appointment.objects if bare else _APPOINTMENTS).filter(pk=pk).first()
    if appointment is None:
        raise NotFound(f"No appointment with id {pk}.")
    schedule_require(actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id)
    return appointment


def with_participants(appointment: Appointment) -> Appointment:
    """An appointment a service has just changed (and loaded with its treatment, practitioner and
    location), with its participants for the response: one query instead of reading it all again."""
    prefetch_related_objects([appointment], Prefetch(
        "participants", queryset=AppointmentPatient.objects.select_related("patient")))
    return appointment


def _day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)


def appointments_list(*, actor, day: dt.date | None = None, location: Location | None = None,
                      practitioner: StaffMember | None = None) -> QuerySet[Appointment]:
    """The appointments `actor` may see starting on `day` (the location's day, else the clinic's)."""
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


def availability(*, actor, practitioner: StaffMember, day: dt.date | None = None,
                 location: Location | None = None) -> list[tuple[Location, Interval]]:
    """Free intervals (aware, in the location's time zone) per location for the practitioner on `day`:
    their shifts there minus their breaks and every appointment they have (at any location) that is
    not cancelled."""
    shifts = Shift.objects.filter(staff=practitioner).select_related("location").order_by("start_time")
    if location is not None:
        shifts = shifts.filter(location=location)
    # The actor must be allowed at every location asked about (none known: only own or all-locations staff).
    places = {location.pk} if location is not None else (
        {s.location_id for s in shifts} | set(practitioner.locations.values_list("pk", flat=True)) or {None})
    for loc_id in places:
        schedule_require(actor, practitioner_id=practitioner.pk, location_id=loc_id)
    return free_intervals(practitioner=practitioner, day=day, shifts=shifts)


def free_intervals(*, practitioner: StaffMember, day: dt.date | None, shifts) -> list[tuple[Location, Interval]]:
    """The unchecked core of availability(): `shifts` minus the practitioner's breaks and appointments on `day`.
    Callers check access (availability) or show only what the public may see (online booking)."""
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
        busy = (Appointment.objects.filter(practitioner=practitioner, start__lt=end, end__gt=start)
                .exclude(status=Status.CANCELLED).values_list("start", "end"))
        breaks = Break.objects.filter(practitioner=practitioner, start__lt=end, end__gt=start).values_list("start", "end")
        for interval in [*busy, *breaks]:
            free = _subtract(free, interval)
        out += [(shift.location, (a.astimezone(zone), b.astimezone(zone))) for a, b in free if b > a]
    return out


def breaks_for(*, actor, practitioner: StaffMember, day: dt.date | None = None) -> list[Break]:
    """The practitioner's breaks (touching `day` in UTC, if given) that `actor` may see."""
    items = Break.objects.filter(practitioner=practitioner).filter(schedule_scope(actor))
    if day is not None:
        items = items.filter(start__date__lte=day, end__date__gte=day)
    return list(items)


def with_pass_cover(appointments: QuerySet[Appointment]) -> QuerySet[Appointment]:
    """Annotate `covered`: some row has a live (reserved or used) pass redemption. One subquery,
    so the schedule grid's package icon costs no query per appointment."""
    from django.db.models import Exists, OuterRef

    from carnet.passes.models import Redemption
    from carnet.passes.selectors import LIVE

    return appointments.annotate(covered=Exists(Redemption.objects.filter(visit__appointment=OuterRef("pk"),
                                                                          status__in=LIVE)))


def appointments_today(*, actor, locations: list[Location]) -> list[Appointment]:
    """The appointments `actor` may see starting today at each of `locations`, "today" being each
    location's own day (its time zone), not cancelled, with `covered` (a pass covers it). One query
    for the rows and one for their patients, however many locations and appointments."""
    from django.db.models import Q

    window = Q(pk__in=[])
    for location in locations:
        start, end = _day_bounds(clock.today(ZoneInfo(location.time_zone)), ZoneInfo(location.time_zone))
        window |= Q(location=location, start__gte=start, start__lt=end)
    qs = _APPOINTMENTS.filter(schedule_scope(actor)).filter(window).exclude(status=Status.CANCELLED)
    return list(with_pass_cover(qs.order_by("location__name", "practitioner__display_name", "start", "pk")))
