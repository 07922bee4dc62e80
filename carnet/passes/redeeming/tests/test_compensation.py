"""What each posted redemption records for the compensation report (SPEC 5.6): the practitioner
and the staff compensation value per session, or that the sale was compensated upfront."""

import pytest

from carnet.conftest import make_patient
from carnet.core import clock
from carnet.passes.models import Redemption
from carnet.passes.redeeming.redemption import pass_attach
from carnet.passes.tests.factories import at, package_template, practitioner, sold_package
from carnet.scheduling.arrival import (
    appointment_arrive,
    appointment_no_show,
    appointment_no_show_undo,
    appointment_unarrive,
)
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set, treatment_of

pytestmark = pytest.mark.django_db
DAY = "2026-05-12"


@pytest.fixture
def setup(front_desk, catalog):
    clinic_set(time_zone="America/Toronto", no_show_fee_minor=2500)
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
        }


def _book(s, hhmm="09:00", treatment=None, prac=None, **kw):
    return appointment_book(
        actor=s["fd"].user,
        treatment=treatment or s["cat"]["treatment"],
        practitioner=prac or s["prac"],
        location=s["cat"]["location"],
        start=at(DAY, hhmm),
        patients=[s["patient"]],
        **kw,
    )


def _redemption(appointment) -> Redemption:
    return Redemption.objects.filter(visit__appointment=appointment).latest("pk")


def test_per_session_records_the_practitioner_and_the_items_compensation_value(setup):
    cat = setup["cat"]
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 1500, 7000, None)]),
    )
    appointment = _book(setup)
    reserved = _redemption(appointment)
    assert (reserved.practitioner_id, reserved.compensation_minor) == (
        None,
        0,
    )  # nothing earned before arrival
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    posted = _redemption(appointment)
    assert posted.status == "posted"
    assert (posted.practitioner_id, posted.compensation_minor, posted.compensated_upfront) == (
        setup["prac"].pk,
        7000,
        False,
    )
    assert posted.additional_charge_minor == 1500 and posted.by_no_show is False
    assert posted.visit.invoice_id is not None  # the cash basis looks at this invoice's payments


def test_without_an_item_value_compensation_is_the_treatments_price(setup):
    cat = setup["cat"]
    other = treatment_of(cat, "individual", name="Massage 90", price=12500)
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 0, None, None), (other, 0, 4000, None)]),
    )
    first, second = _book(setup, "09:00"), _book(setup, "11:00", treatment=other)
    for appointment in (first, second):
        appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    assert _redemption(first).compensation_minor == 9000  # Massage 60's price
    assert _redemption(second).compensation_minor == 4000  # the item's own value wins


def test_the_practitioner_is_whoever_saw_the_patient(setup):
    other = practitioner(setup["cat"]["location"])
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup, prac=other)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    assert _redemption(appointment).practitioner_id == other.pk


def test_a_pass_sold_by_a_staff_member_is_compensated_upfront(setup):
    cat = setup["cat"]
    seller = practitioner(cat["location"])
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 0, 7000, None)]),
        sold_by=seller,
    )
    sale_line = sold.pass_invoices.get().invoice.lines.get()
    assert sale_line.staff_id == seller.pk  # the sale itself carries the seller for the report
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    posted = _redemption(appointment)
    assert (posted.compensation_minor, posted.compensated_upfront) == (0, True)
    assert posted.practitioner_id == setup["prac"].pk  # still recorded: who saw the patient


def test_un_arriving_clears_the_compensation(setup):
    cat = setup["cat"]
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 0, 7000, None)]),
    )
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    appointment_unarrive(actor=setup["fd"].user, appointment=appointment)
    redemption = _redemption(appointment)
    assert redemption.status == "reserved"
    assert (
        redemption.compensation_minor,
        redemption.compensated_upfront,
        redemption.value_minor,
    ) == (0, False, 0)
    assert redemption.remaining_after is None and redemption.posted_at is None
    assert not Redemption.objects.filter(status="posted").exists()  # the report sees nothing
    appointment_arrive(
        actor=setup["fd"].user, appointment=appointment
    )  # arriving again records it again
    assert _redemption(appointment).compensation_minor == 7000


def test_un_arriving_also_clears_the_practitioner(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    appointment_unarrive(actor=setup["fd"].user, appointment=appointment)
    assert _redemption(appointment).practitioner_id is None


def test_upfront_is_cleared_by_un_arriving_too(setup):
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(setup["cat"]),
        sold_by=practitioner(setup["cat"]["location"]),
    )
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    assert _redemption(appointment).compensated_upfront is True
    appointment_unarrive(actor=setup["fd"].user, appointment=appointment)
    assert _redemption(appointment).compensated_upfront is False


def test_a_no_show_that_uses_the_session_records_compensation(setup):
    cat = setup["cat"]
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 1000, 6000, None)]),
    )
    appointment = _book(setup)
    appointment_no_show(actor=setup["fd"].user, appointment=appointment, use_pass=True)
    posted = _redemption(appointment)
    assert (posted.status, posted.by_no_show) == ("posted", True)
    assert (posted.practitioner_id, posted.compensation_minor, posted.compensated_upfront) == (
        setup["prac"].pk,
        6000,
        False,
    )
    appointment_no_show_undo(actor=setup["fd"].user, appointment=appointment)
    undone = _redemption(appointment)
    assert (undone.status, undone.by_no_show, undone.compensation_minor) == ("reserved", False, 0)


def test_a_no_show_charged_the_fee_earns_nothing_from_the_pass(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    appointment_no_show(actor=setup["fd"].user, appointment=appointment, use_pass=False)
    voided = _redemption(appointment)
    assert voided.status == "voided" and voided.compensation_minor == 0
    assert not Redemption.objects.filter(status="posted").exists()


def test_redeeming_a_past_visit_records_compensation(setup):
    cat = setup["cat"]
    appointment = _book(setup, pass_choice=None)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 0, 5500, None)]),
    )
    pass_attach(actor=setup["fd"].user, visit=appointment.visits.get(), sold_pass=sold)
    posted = _redemption(appointment)
    assert (posted.status, posted.practitioner_id, posted.compensation_minor) == (
        "posted",
        setup["prac"].pk,
        5500,
    )
