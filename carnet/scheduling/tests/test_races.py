"""Two requests racing for one practitioner's slot: exactly one wins, on SQLite and PostgreSQL."""

import pytest

from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core.errors import CarnetError
from carnet.scheduling.models import Appointment
from carnet.scheduling.services import appointment_book, appointment_join

from .factories import at, practitioner, treatment_of

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


def race_outcomes(results):
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)]
    assert not unexpected, unexpected
    return sorted("refused:" + r.code if isinstance(r, CarnetError) else "ok" for r in results)


def test_racing_bookings_for_one_slot_exactly_one_wins():
    catalog, desk = make_catalog(), make_staff()
    prac = practitioner(catalog["location"])
    patients = [make_patient() for _ in range(4)]
    starts = ["09:00", "09:15", "09:30", "09:45"]  # all overlap each other
    results = race(
        4,
        lambda i: (
            appointment_book(
                actor=desk.user,
                treatment=catalog["treatment"],
                practitioner=prac,
                location=catalog["location"],
                start=at("2026-05-12", starts[i]),
                patients=[patients[i]],
            ).pk
        ),
    )
    assert race_outcomes(results) == [
        "ok",
        "refused:double_booked",
        "refused:double_booked",
        "refused:double_booked",
    ]
    assert Appointment.objects.filter(practitioner=prac).count() == 1


def test_racing_joins_never_overfill_a_class():
    catalog, desk = make_catalog(), make_staff()
    prac = practitioner(catalog["location"])
    session = appointment_book(
        actor=desk.user,
        treatment=treatment_of(catalog, "class", capacity=2),
        practitioner=prac,
        location=catalog["location"],
        start=at("2026-05-12", "09:00"),
        patients=[],
    )
    patients = [make_patient() for _ in range(4)]
    results = race(
        4, lambda i: appointment_join(actor=desk.user, appointment=session, patient=patients[i]).pk
    )
    assert race_outcomes(results) == ["ok", "ok", "refused:full", "refused:full"]
    assert session.visits.count() == 2
