"""Availability = shifts minus appointments, in the location's time zone, across DST changes."""

import datetime as dt

import pytest

from carnet.clinic.models import Location
from carnet.conftest import make_patient
from carnet.people.models import Shift
from carnet.scheduling.selectors import appointments_list, availability
from carnet.scheduling.services import appointment_cancel

from .factories import at, book, practitioner

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def _shift(prac, location, weekday, start, end):
    return Shift.objects.create(
        staff=prac,
        location=location,
        weekday=weekday,
        start_time=dt.time(*start),
        end_time=dt.time(*end),
    )


def _hours(free):
    # In UTC: Python subtracts two datetimes of one zone by wall clock, which a DST day breaks.
    return sum((b.astimezone(UTC) - a.astimezone(UTC)).total_seconds() for _, (a, b) in free) / 3600


def test_availability_is_the_shift_minus_booked_appointments(front_desk, catalog):
    prac = practitioner(catalog["location"])
    _shift(prac, catalog["location"], 1, (9, 0), (17, 0))  # Tuesday
    book(front_desk, catalog, prac, at("2026-05-12", "11:00"))
    free = availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 5, 12))
    assert [(a, b) for _, (a, b) in free] == [
        (at("2026-05-12", "09:00"), at("2026-05-12", "11:00")),
        (at("2026-05-12", "12:00"), at("2026-05-12", "17:00")),
    ]
    assert availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 5, 13)) == []


def test_a_cancelled_appointment_gives_its_time_back(front_desk, catalog):
    prac = practitioner(catalog["location"])
    _shift(prac, catalog["location"], 1, (9, 0), (12, 0))
    appt = book(front_desk, catalog, prac, at("2026-05-12", "10:00"))
    appointment_cancel(actor=front_desk.user, appointment=appt)
    assert (
        _hours(availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 5, 12)))
        == 3
    )


def test_availability_on_the_spring_forward_day_in_toronto(front_desk, catalog):
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: a 00:00–06:00 shift is five real hours.
    prac = practitioner(catalog["location"])
    _shift(prac, catalog["location"], 6, (0, 0), (6, 0))
    _shift(prac, catalog["location"], 6, (9, 0), (17, 0))
    free = availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 3, 8))
    night, day = [interval for _, interval in free]
    assert night[1].astimezone(UTC) - night[0].astimezone(UTC) == dt.timedelta(hours=5)
    assert day[0].astimezone(UTC) == dt.datetime(2026, 3, 8, 13, tzinfo=UTC)  # 09:00 EDT (-4)
    a_week_before = availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 3, 1))
    assert a_week_before[1][1][0].astimezone(UTC) == dt.datetime(
        2026, 3, 1, 14, tzinfo=UTC
    )  # 09:00 EST (-5)


def test_availability_on_the_fall_back_day_in_toronto(front_desk, catalog):
    # 2026-11-01 02:00 EDT falls back to 01:00 EST: a 00:00–06:00 shift is seven real hours.
    prac = practitioner(catalog["location"])
    _shift(prac, catalog["location"], 6, (0, 0), (6, 0))
    assert (
        _hours(availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 11, 1)))
        == 7
    )
    book(
        front_desk, catalog, prac, dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    )  # 01:30 EDT, the first 01:30
    free = availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 11, 1))
    assert _hours(free) == 6
    assert free[0][1][1].astimezone(UTC) == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_the_day_list_uses_the_locations_day_on_a_dst_day(front_desk, catalog):
    prac = practitioner(catalog["location"])
    late = book(front_desk, catalog, prac, at("2026-03-08", "23:30"), patients=[make_patient()])
    early = book(front_desk, catalog, prac, at("2026-03-08", "00:30"), patients=[make_patient()])
    book(front_desk, catalog, prac, at("2026-03-09", "00:30"), patients=[make_patient()])
    listed = appointments_list(
        actor=front_desk.user, day=dt.date(2026, 3, 8), location=catalog["location"]
    )
    assert [a.pk for a in listed] == [early.pk, late.pk]


def test_availability_in_another_time_zone_uses_that_locations_wall_clock(front_desk, catalog):
    vancouver = Location.objects.create(name="West", time_zone="America/Vancouver")
    prac = practitioner(vancouver)
    _shift(prac, vancouver, 1, (9, 0), (10, 0))
    [(loc, (start, _end))] = availability(
        actor=front_desk.user, practitioner=prac, day=dt.date(2026, 5, 12)
    )
    assert loc == vancouver and start.astimezone(UTC) == dt.datetime(2026, 5, 12, 16, tzinfo=UTC)
