"""Arrival billing for each kind, un-arrive reversal, and the no-show fee:
mark and undo, each idempotent."""

import pytest

from carnet.billing.models import Invoice
from carnet.billing.payments import allocation_unapply, payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core.errors import Conflict
from carnet.core.models import ActivityLog
from carnet.scheduling.arrival import (
    appointment_arrive,
    appointment_no_show,
    appointment_no_show_undo,
    appointment_unarrive,
)
from carnet.scheduling.models import Status
from carnet.scheduling.services import appointment_cancel

from .factories import at, book, clinic_set, practitioner, treatment_of

pytestmark = pytest.mark.django_db

DAY = "2026-05-12"


def _live_invoices(patient):
    return list(Invoice.objects.filter(patient=patient, deleted_at__isnull=True))


def test_arriving_an_individual_visit_creates_one_invoice_for_the_treatment(front_desk, catalog):
    prac = practitioner(catalog["location"])
    patient = make_patient()
    appt = book(front_desk, catalog, prac, at(DAY, "09:00"), patients=[patient])
    appointment_arrive(actor=front_desk.user, appointment=appt)
    appt.refresh_from_db()
    visit = appt.visits.get()
    assert appt.status == visit.status == Status.ARRIVED
    [invoice] = _live_invoices(patient)
    assert visit.invoice == invoice and invoice.total_minor == 10170  # 90.00 + 13 % HST
    line = invoice.lines.get()
    assert line.treatment_id == catalog["treatment"].pk and line.staff_id == prac.pk
    assert invoice.location == catalog["location"] and str(invoice.invoice_date) == DAY
    assert_ledger_ok()


def test_arriving_twice_is_refused(front_desk, catalog):
    appt = book(front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"))
    appointment_arrive(actor=front_desk.user, appointment=appt)
    with pytest.raises(Conflict, match="arrived, not booked"):
        appointment_arrive(actor=front_desk.user, appointment=appt)


def test_a_group_arrival_bills_the_primary_once_listing_arrived_secondary_clients(
    front_desk, catalog
):
    prac = practitioner(catalog["location"])
    group = treatment_of(catalog, "group", capacity=4, name="Couples")
    primary = make_patient(first_name="Ann")
    came, stayed_home = make_patient(first_name="Bob"), make_patient(first_name="Cyd")
    appt = book(
        front_desk,
        catalog,
        prac,
        at(DAY, "09:00"),
        patients=[primary, came, stayed_home],
        treatment=group,
    )
    appointment_arrive(actor=front_desk.user, appointment=appt, patient_ids=[came.pk])
    [invoice] = _live_invoices(primary)
    assert invoice.total_minor == 9000  # no taxes on this treatment
    description = invoice.lines.get().description
    assert "Bob Test" in description and "Cyd" not in description
    assert _live_invoices(came) == [] and _live_invoices(stayed_home) == []
    statuses = dict(appt.visits.values_list("patient_id", "status"))
    assert statuses == {primary.pk: "arrived", came.pk: "arrived", stayed_home.pk: "booked"}
    assert_ledger_ok()


def test_a_class_bills_each_arrived_participant_separately(front_desk, catalog):
    prac = practitioner(catalog["location"])
    a, b, c = make_patient(), make_patient(), make_patient()
    appt = book(
        front_desk,
        catalog,
        prac,
        at(DAY, "09:00"),
        patients=[a, b, c],
        treatment=treatment_of(catalog, "class", capacity=5, price=2000),
    )
    appointment_arrive(actor=front_desk.user, appointment=appt, patient_ids=[a.pk])
    appointment_arrive(actor=front_desk.user, appointment=appt, patient_ids=[b.pk])
    assert [i.total_minor for i in _live_invoices(a) + _live_invoices(b)] == [2000, 2000]
    assert _live_invoices(c) == []
    appt.refresh_from_db()
    assert appt.status == Status.BOOKED  # the session itself stays booked
    assert_ledger_ok()


def test_un_arrive_deletes_the_invoice_and_reverses_the_ledger(front_desk, catalog):
    patient = make_patient()
    appt = book(
        front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"), patients=[patient]
    )
    appointment_arrive(actor=front_desk.user, appointment=appt)
    invoice = appt.visits.get().invoice
    appointment_unarrive(actor=front_desk.user, appointment=appt)
    appt.refresh_from_db()
    invoice.refresh_from_db()
    assert appt.status == Status.BOOKED and invoice.deleted_at is not None
    assert appt.visits.get().invoice is None
    assert_ledger_ok()
    appointment_arrive(actor=front_desk.user, appointment=appt)  # and it can be arrived again
    assert len(_live_invoices(patient)) == 1


def test_un_arrive_is_refused_while_a_payment_is_applied_and_says_to_unapply(
    front_desk, admin_staff, catalog
):
    patient = make_patient()
    appt = book(
        front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"), patients=[patient]
    )
    appointment_arrive(actor=front_desk.user, appointment=appt)
    invoice = appt.visits.get().invoice
    payment = payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=1000,
        allocations=[(invoice, 1000)],
    )
    with pytest.raises(Conflict, match="Unapply those payments") as err:
        appointment_unarrive(actor=front_desk.user, appointment=appt)
    assert err.value.code == "invoice_has_payments"
    assert Invoice.objects.get(pk=invoice.pk).deleted_at is None
    allocation_unapply(actor=admin_staff.user, allocation=payment.allocations.get())
    appointment_unarrive(actor=front_desk.user, appointment=appt)
    assert _live_invoices(patient) == []
    assert_ledger_ok()


def test_un_arrive_of_a_class_participant_touches_only_their_invoice(front_desk, catalog):
    a, b = make_patient(), make_patient()
    appt = book(
        front_desk,
        catalog,
        practitioner(catalog["location"]),
        at(DAY, "09:00"),
        patients=[a, b],
        treatment=treatment_of(catalog, "class", capacity=5),
    )
    appointment_arrive(actor=front_desk.user, appointment=appt)
    appointment_unarrive(actor=front_desk.user, appointment=appt, patient_ids=[a.pk])
    assert _live_invoices(a) == [] and len(_live_invoices(b)) == 1
    assert_ledger_ok()


def test_no_show_charges_the_clinic_fee_and_undo_deletes_it(front_desk, catalog):
    clinic_set(no_show_fee_minor=2500)
    patient = make_patient()
    appt = book(
        front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"), patients=[patient]
    )
    appointment_no_show(actor=front_desk.user, appointment=appt)
    appt.refresh_from_db()
    [fee] = _live_invoices(patient)
    assert appt.status == Status.NO_SHOW and fee.total_minor == 2500
    assert fee.lines.get().description.startswith("No-show fee")
    appointment_no_show_undo(actor=front_desk.user, appointment=appt)
    appt.refresh_from_db()
    assert appt.status == Status.BOOKED and _live_invoices(patient) == []
    assert_ledger_ok()


def test_marking_a_no_show_twice_bills_one_fee_and_never_undoes(front_desk, catalog):
    clinic_set(no_show_fee_minor=2500)
    patient = make_patient()
    appt = book(
        front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"), patients=[patient]
    )
    for _ in range(2):  # a double click
        appointment_no_show(actor=front_desk.user, appointment=appt)
    appt.refresh_from_db()
    assert appt.status == Status.NO_SHOW and [i.total_minor for i in _live_invoices(patient)] == [
        2500
    ]
    assert ActivityLog.objects.filter(verb="no-show", object_id=str(appt.pk)).count() == 1
    for _ in range(2):  # and a double click on Undo
        appointment_no_show_undo(actor=front_desk.user, appointment=appt)
    appt.refresh_from_db()
    assert appt.status == Status.BOOKED and _live_invoices(patient) == []
    assert ActivityLog.objects.filter(verb="no-show undone", object_id=str(appt.pk)).count() == 1
    assert_ledger_ok()


def test_a_class_no_show_marks_only_who_is_still_booked(front_desk, catalog):
    clinic_set(no_show_fee_minor=2500)
    a, b = make_patient(), make_patient()
    appt = book(
        front_desk,
        catalog,
        practitioner(catalog["location"]),
        at(DAY, "09:00"),
        patients=[a, b],
        treatment=treatment_of(catalog, "class", capacity=3),
    )
    appointment_no_show(actor=front_desk.user, appointment=appt, patient_ids=[a.pk])
    appointment_no_show(
        actor=front_desk.user, appointment=appt
    )  # everyone still booked: b; a stays marked
    assert [i.total_minor for i in _live_invoices(a)] == [2500] and [
        i.total_minor for i in _live_invoices(b)
    ] == [2500]
    assert set(appt.visits.values_list("status", flat=True)) == {Status.NO_SHOW}
    appointment_no_show_undo(actor=front_desk.user, appointment=appt, patient_ids=[b.pk])
    assert _live_invoices(b) == [] and len(_live_invoices(a)) == 1
    assert_ledger_ok()


def test_no_show_without_a_fee_charges_nothing(front_desk, catalog):
    clinic_set(no_show_fee_minor=2500)
    patient = make_patient()
    appt = book(
        front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"), patients=[patient]
    )
    appointment_no_show(actor=front_desk.user, appointment=appt, charge_fee=False)
    assert Invoice.objects.filter(patient=patient).count() == 0
    clinic_set(no_show_fee_minor=0)
    other = book(
        front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"), patients=[patient]
    )
    appointment_no_show(actor=front_desk.user, appointment=other)
    assert Invoice.objects.filter(patient=patient).count() == 0


def test_a_group_no_show_fee_goes_to_the_primary_only(front_desk, catalog):
    clinic_set(no_show_fee_minor=2500)
    primary, secondary = make_patient(), make_patient()
    appt = book(
        front_desk,
        catalog,
        practitioner(catalog["location"]),
        at(DAY, "09:00"),
        patients=[primary, secondary],
        treatment=treatment_of(catalog, "group", capacity=3),
    )
    appointment_no_show(actor=front_desk.user, appointment=appt)
    assert len(_live_invoices(primary)) == 1 and _live_invoices(secondary) == []
    assert_ledger_ok()


def test_an_arrived_visit_cannot_be_marked_no_show(front_desk, catalog):
    appt = book(front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"))
    appointment_arrive(actor=front_desk.user, appointment=appt)
    with pytest.raises(Conflict, match="Un-arrive it first"):
        appointment_no_show(actor=front_desk.user, appointment=appt)


def test_a_cancelled_appointment_cannot_be_arrived(front_desk, catalog):
    appt = book(front_desk, catalog, practitioner(catalog["location"]), at(DAY, "09:00"))
    appointment_cancel(actor=front_desk.user, appointment=appt)
    with pytest.raises(Conflict, match="cancelled"):
        appointment_arrive(actor=front_desk.user, appointment=appt)
