"""Two requests racing for one practitioner's slot: exactly one wins, on SQLite and PostgreSQL."""

import pytest

from carnet.billing.models import Invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core.errors import CarnetError
from carnet.scheduling.arrival import appointment_arrive, appointment_no_show
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


@pytest.mark.parametrize("action", ["arrive", "no_show"])
def test_a_class_marked_from_four_requests_at_once_bills_each_participant_once(action):
    """Everyone in a class arrived (or marked a no-show) from four requests at once. Each reads the
    participants with the class's lock in one statement; one that waited for the lock read them
    as they were before it, and its change of a participant already changed is refused (a 409)
    rather than billing them twice."""
    catalog, desk = make_catalog(), make_staff()
    session = appointment_book(
        actor=desk.user,
        treatment=treatment_of(catalog, "class", capacity=3),
        practitioner=practitioner(catalog["location"]),
        location=catalog["location"],
        start=at("2026-05-12", "09:00"),
        patients=[],
    )
    for _ in range(3):
        appointment_join(actor=desk.user, appointment=session, patient=make_patient())
    mark = appointment_arrive if action == "arrive" else appointment_no_show
    results = race(4, lambda i: mark(actor=desk.user, appointment=session))
    outcomes = race_outcomes(results)
    assert outcomes[0] == "ok", outcomes
    assert set(outcomes[1:]) <= {"ok", "refused:appointment_changed", "refused:not_booked"}
    done = "arrived" if action == "arrive" else "no_show"
    assert sorted(session.visits.values_list("status", flat=True)) == [done] * 3
    if action == "arrive":  # one invoice per participant, however many requests
        assert Invoice.objects.filter(deleted_at__isnull=True).count() == 3
    assert_ledger_ok()
