"""Scheduling test data: a practitioner who works at the catalog's location, and bookings."""

import datetime as dt
from zoneinfo import ZoneInfo

from carnet.clinic.models import Clinic, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.models import Shift
from carnet.scheduling.services import appointment_book

TORONTO = ZoneInfo("America/Toronto")


def at(day: str, hhmm: str, zone=TORONTO) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=zone)


def practitioner(location, level=AccessLevel.PRACTITIONER_FRONT_DESK):
    staff = make_staff(level, practitioner=True)
    staff.locations.add(location)
    return staff


def working_practitioner(location, name=None, weekday=0, level=AccessLevel.PRACTITIONER_FRONT_DESK):
    """A practitioner at `location` with a 09:00-17:00 shift there on `weekday`
    (Monday by default)."""
    staff = practitioner(location, level)
    if name:
        staff.display_name = name
        staff.save()
    Shift.objects.create(
        staff=staff, location=location, weekday=weekday, start_time=dt.time(9), end_time=dt.time(17)
    )
    return staff


def treatment_of(catalog, kind: str, capacity=None, name=None, price=9000):
    return Treatment.objects.create(
        name=name or f"{kind} session",
        discipline=catalog["discipline"],
        income_category=catalog["income_category"],
        duration_minutes=60,
        price_minor=price,
        kind=kind,
        capacity=capacity,
    )


def book(actor, catalog, prac, start, patients=None, treatment=None):
    return appointment_book(
        actor=actor.user,
        treatment=treatment or catalog["treatment"],
        practitioner=prac,
        location=catalog["location"],
        start=start,
        patients=patients if patients is not None else [make_patient()],
    )


def clinic_set(**fields):
    clinic_get()
    Clinic.objects.filter(pk=1).update(**fields)
