"""Booking rules: headcounts, capacity, double-booking, cancel, copy, reschedule, group → class."""

import datetime as dt

import pytest

from carnet.conftest import make_patient
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.scheduling.models import Appointment, Status
from carnet.scheduling.services import (
    appointment_cancel,
    appointment_copy,
    appointment_duplicate_as_class,
    appointment_join,
    appointment_reschedule,
)

from .factories import at, book, clinic_set, practitioner, treatment_of

pytestmark = pytest.mark.django_db

DAY = "2026-05-12"


def test_booking_an_individual_appointment_sets_end_from_duration_and_logs(front_desk, catalog):
    prac = practitioner(catalog["location"])
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"))
    assert appt.end == at(DAY, "10:00") and appt.status == Status.BOOKED
    assert appt.booked_by == "staff" and appt.booked_by_staff == front_desk
    assert [r.role for r in appt.visits.all()] == ["primary"]
    assert ActivityLog.objects.filter(verb="booked", object_id=str(appt.pk)).exists()


def test_an_individual_appointment_has_exactly_one_patient(front_desk, catalog):
    prac = practitioner(catalog["location"])
    with pytest.raises(ValidationFailed, match="exactly one patient"):
        book(front_desk, catalog, prac, at(DAY, "09:00"), patients=[make_patient(), make_patient()])
    with pytest.raises(ValidationFailed):
        book(front_desk, catalog, prac, at(DAY, "09:00"), patients=[])


def test_a_naive_start_time_is_refused(front_desk, catalog):
    with pytest.raises(ValidationFailed, match="UTC offset"):
        book(front_desk, catalog, practitioner(catalog["location"]), dt.datetime(2026, 5, 12, 9))


def test_a_non_practitioner_cannot_be_booked(front_desk, catalog):
    with pytest.raises(ValidationFailed, match="not an active practitioner"):
        book(front_desk, catalog, front_desk, at(DAY, "09:00"))


def test_double_booking_a_practitioner_is_refused(front_desk, catalog):
    prac = practitioner(catalog["location"])
    book(front_desk, catalog, prac, at(DAY, "09:00"))
    with pytest.raises(
        Conflict, match="already booked from 2026-05-12 09:00 to 2026-05-12 10:00"
    ) as err:
        book(front_desk, catalog, prac, at(DAY, "09:30"))
    assert err.value.code == "double_booked"
    book(front_desk, catalog, prac, at(DAY, "10:00"))  # back-to-back is fine


def test_double_booking_is_allowed_when_the_clinic_allows_it(front_desk, catalog):
    clinic_set(allow_double_booking=True)
    prac = practitioner(catalog["location"])
    book(front_desk, catalog, prac, at(DAY, "09:00"))
    book(front_desk, catalog, prac, at(DAY, "09:30"))
    assert Appointment.objects.filter(practitioner=prac).count() == 2


def test_a_cancelled_appointment_frees_its_slot(front_desk, catalog):
    prac = practitioner(catalog["location"])
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"))
    appointment_cancel(actor=front_desk.user, appointment=appt)
    assert Appointment.objects.get(pk=appt.pk).status == Status.CANCELLED
    assert set(appt.visits.values_list("status", flat=True)) == {Status.CANCELLED}
    book(front_desk, catalog, prac, at(DAY, "09:00"))
    with pytest.raises(Conflict, match="already cancelled"):
        appointment_cancel(actor=front_desk.user, appointment=appt)


def test_group_first_booked_is_primary_and_secondary_clients_join(front_desk, catalog):
    prac = practitioner(catalog["location"])
    group = treatment_of(catalog, "group", capacity=3)
    first, second, third = make_patient(), make_patient(), make_patient()
    appt = book(
        front_desk, catalog, prac, at(DAY, "09:00"), patients=[first, second], treatment=group
    )
    appointment_join(actor=front_desk.user, appointment=appt, patient=third)
    roles = {r.patient_id: r.role for r in appt.visits.all()}
    assert roles == {first.pk: "primary", second.pk: "secondary", third.pk: "secondary"}
    with pytest.raises(Conflict, match="3 places") as err:
        appointment_join(actor=front_desk.user, appointment=appt, patient=make_patient())
    assert err.value.code == "full"


def test_class_capacity_is_enforced_and_a_patient_joins_once(front_desk, catalog):
    prac = practitioner(catalog["location"])
    yoga = treatment_of(catalog, "class", capacity=2)
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"), patients=[], treatment=yoga)
    p = make_patient()
    appointment_join(actor=front_desk.user, appointment=appt, patient=p)
    with pytest.raises(Conflict, match="already in this appointment"):
        appointment_join(actor=front_desk.user, appointment=appt, patient=p)
    appointment_join(actor=front_desk.user, appointment=appt, patient=make_patient())
    with pytest.raises(Conflict, match="2 places"):
        appointment_join(actor=front_desk.user, appointment=appt, patient=make_patient())
    assert set(appt.visits.values_list("role", flat=True)) == {"participant"}


def test_an_individual_appointment_takes_no_second_patient(front_desk, catalog):
    appt = book(front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"))
    with pytest.raises(Conflict, match="one patient"):
        appointment_join(actor=front_desk.user, appointment=appt, patient=make_patient())


def test_cancelling_one_class_participant_keeps_the_session(front_desk, catalog):
    prac = practitioner(catalog["location"])
    a, b = make_patient(), make_patient()
    appt = book(
        front_desk,
        catalog,
        prac,
        at(DAY, "09:00"),
        patients=[a, b],
        treatment=treatment_of(catalog, "class", capacity=5),
    )
    appointment_cancel(actor=front_desk.user, appointment=appt, patient=a)
    appt.refresh_from_db()
    assert appt.status == Status.BOOKED
    assert dict(appt.visits.values_list("patient_id", "status")) == {
        a.pk: "cancelled",
        b.pk: "booked",
    }


def test_copy_makes_a_new_booked_appointment_with_the_same_patients(front_desk, catalog):
    prac = practitioner(catalog["location"])
    patient = make_patient()
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"), patients=[patient])
    copy = appointment_copy(
        actor=front_desk.user, appointment=appt, start=at("2026-05-19", "09:00")
    )
    assert (
        copy.pk != appt.pk
        and copy.status == Status.BOOKED
        and copy.end == at("2026-05-19", "10:00")
    )
    assert list(copy.visits.values_list("patient_id", flat=True)) == [patient.pk]
    with pytest.raises(Conflict, match="already booked"):
        appointment_copy(actor=front_desk.user, appointment=appt, start=at(DAY, "09:30"))


def test_reschedule_moves_a_booked_appointment_and_checks_the_new_slot(front_desk, catalog):
    prac = practitioner(catalog["location"])
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"))
    book(front_desk, catalog, prac, at(DAY, "13:00"))
    appointment_reschedule(
        actor=front_desk.user, appointment=appt, start=at(DAY, "09:30")
    )  # overlaps only itself
    assert Appointment.objects.get(pk=appt.pk).start == at(DAY, "09:30")
    with pytest.raises(Conflict, match="already booked"):
        appointment_reschedule(actor=front_desk.user, appointment=appt, start=at(DAY, "12:30"))


def test_duplicating_a_group_as_a_class_moves_everyone_and_cancels_the_group(front_desk, catalog):
    prac = practitioner(catalog["location"])
    a, b = make_patient(), make_patient()
    group = book(
        front_desk,
        catalog,
        prac,
        at(DAY, "09:00"),
        patients=[a, b],
        treatment=treatment_of(catalog, "group", capacity=4),
    )
    session = appointment_duplicate_as_class(
        actor=front_desk.user,
        appointment=group,
        treatment=treatment_of(catalog, "class", capacity=4, name="Class"),
    )
    group.refresh_from_db()
    assert group.status == Status.CANCELLED
    assert session.start == group.start and session.kind == "class"
    assert sorted(session.visits.values_list("patient_id", "role")) == [
        (a.pk, "participant"),
        (b.pk, "participant"),
    ]


def test_only_a_group_can_be_duplicated_as_a_class(front_desk, catalog):
    prac = practitioner(catalog["location"])
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"))
    with pytest.raises(ValidationFailed, match="Only a group"):
        appointment_duplicate_as_class(
            actor=front_desk.user,
            appointment=appt,
            treatment=treatment_of(catalog, "class", capacity=4),
        )
