"""Patients racing online for one practitioner's slot: exactly one wins,
on SQLite and PostgreSQL."""

import datetime as dt

import pytest

from carnet.conftest import make_catalog, race
from carnet.core import clock
from carnet.people.models import Shift
from carnet.people.services import patient_sign_up
from carnet.scheduling.models import Appointment
from carnet.scheduling.online import appointment_book_online

from .factories import at, practitioner
from .test_races import race_outcomes

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


def test_racing_online_bookings_for_one_slot_exactly_one_wins():
    catalog = make_catalog()
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    prac = practitioner(catalog["location"])
    Shift.objects.create(
        staff=prac,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(12),
    )
    patients = [
        patient_sign_up(
            first_name=f"P{i}",
            last_name="Race",
            email=f"race{i}@example.test",
            password="a long pass phrase 42",
        )
        for i in range(3)
    ]
    with clock.frozen(at("2026-05-11", "12:00")):
        results = race(
            3,
            lambda i: (
                appointment_book_online(
                    user=patients[i].user,
                    patient=patients[i],
                    treatment=catalog["treatment"],
                    practitioner=prac,
                    location=catalog["location"],
                    start=at("2026-05-12", "10:00"),
                    idempotency_key=f"key{i}",
                ).pk
            ),
        )
    assert race_outcomes(results) == ["ok", "refused:double_booked", "refused:double_booked"]
    assert Appointment.objects.filter(practitioner=prac, booked_by="online").count() == 1
