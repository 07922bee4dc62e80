"""Receipts of pass-covered visits: sessions remaining (SPEC 9.2), insurer-ready receipts that show
the visit's prepaid share as paid (SPEC 9.11) and the insurance-friendly set-up of SPEC 5.5."""

import pytest
from django.urls import reverse

from carnet.billing.documents import receipt_context, receipt_pdf
from carnet.billing.payments import credit_apply, payment_receive
from carnet.billing.selectors import credit_balance
from carnet.billing.tests.test_documents import pdf_text
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.passes.documents import coverage_for_invoice
from carnet.passes.models import Redemption
from carnet.scheduling.arrival import appointment_arrive, appointment_unarrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

from .factories import at, package_template, practitioner, sold_package

pytestmark = pytest.mark.django_db
DAY = "2026-05-12"
FORMS = ["quick", "standard", "detailed"]


@pytest.fixture
def setup(front_desk, catalog):
    clinic_set(time_zone="America/Toronto", insurer_ready_receipts=False)
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(first_name="Ines", last_name="Moreau"),
        }


def _arrived_invoice(s, hhmm="09:00", day=DAY):
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, hhmm),
        patients=[s["patient"]],
    )
    appointment_arrive(actor=s["fd"].user, appointment=appointment)
    visit = appointment.visits.get()
    visit.refresh_from_db()
    return appointment, visit.invoice


def _page(client, s, invoice, form):
    client.force_login(s["fd"].user)
    response = client.get(reverse("billing:receipt", args=[invoice.pk]) + f"?form={form}")
    assert response.status_code == 200
    return response.content.decode()


def _pay(s, invoice):
    invoice.refresh_from_db()
    payment_receive(
        actor=s["fd"].user,
        patient=s["patient"],
        method="cash",
        amount_minor=invoice.balance_minor,
        allocations=[(invoice, invoice.balance_minor)],
    )


# SPEC 9.2: sessions remaining


@pytest.mark.parametrize("form", FORMS)
def test_a_covered_visit_receipt_names_the_package_and_the_sessions_left(client, setup, form):
    cat = setup["cat"]
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 1500, None, None)]),
    )
    _, first = _arrived_invoice(setup, "09:00")
    _, second = _arrived_invoice(setup, "11:00")
    assert "Covered by 10 massages — 9 sessions remaining after this visit" in _page(
        client, setup, first, form
    )
    html = _page(client, setup, second, form)
    assert "Covered by 10 massages — 8 sessions remaining after this visit" in html
    assert "$16.95" in html and "Paid by prepaid package" not in html  # insurer-ready mode is off


@pytest.mark.parametrize("form", FORMS)
def test_the_pdf_receipt_shows_the_sessions_left_too(setup, form):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"], quantity=2))
    _arrived_invoice(setup, "09:00")
    _, last = _arrived_invoice(setup, "11:00")
    text = " ".join(pdf_text(receipt_pdf(last, form)).split())
    assert "Covered by 10 massages" in text and "0 sessions remaining after this visit" in text
    assert "No charge" in text


def test_one_session_left_is_singular_and_a_future_booking_already_counts(client, setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"], quantity=3))
    appointment_book(
        actor=setup["fd"].user,
        treatment=setup["cat"]["treatment"],
        practitioner=setup["prac"],
        location=setup["cat"]["location"],
        start=at("2026-05-20", "09:00"),
        patients=[setup["patient"]],
    )
    _, invoice = _arrived_invoice(setup)  # the booking on the 20th has reserved its use (SPEC 5.3)
    assert "— 1 session remaining after this visit" in _page(client, setup, invoice, "standard")


def test_a_receipt_without_a_package_says_nothing_about_one(client, setup):
    _, invoice = _arrived_invoice(setup)
    assert coverage_for_invoice(invoice) == []
    html = _page(client, setup, invoice, "detailed")
    assert "Covered by" not in html and "$101.70" in html


def test_an_unarrived_visit_no_longer_claims_its_package(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment, invoice = _arrived_invoice(setup)
    assert [c["remaining_after"] for c in coverage_for_invoice(invoice)] == [9]
    appointment_unarrive(actor=setup["fd"].user, appointment=appointment)
    invoice.refresh_from_db()
    assert coverage_for_invoice(invoice) == [] and receipt_context(invoice)["coverage"] == []


# SPEC 9.11: insurer-ready receipts


@pytest.mark.parametrize("form", FORMS)
def test_insurer_ready_receipt_shows_the_prepaid_share_as_paid(client, setup, form):
    cat = setup["cat"]
    clinic_set(insurer_ready_receipts=True)
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 1500, None, None)]),
    )
    _, invoice = _arrived_invoice(setup)
    _pay(setup, invoice)
    context = receipt_context(invoice, form)
    # The invoice itself is untouched: 15.00 + 13 % = 16.95, paid;
    # the prepaid 90.00 is shown beside it.
    assert (context["total"].minor, context["paid"].minor, context["balance"].minor) == (
        1695,
        1695,
        0,
    )
    assert context["prepaid"].minor == 9000 and context["visit_value"].minor == 10695
    assert context["paid_in_all"].minor == context["visit_value"].minor
    assert sum(line.amount.minor for line in context["lines"]) == context["subtotal"].minor == 1500
    html = _page(client, setup, invoice, form)
    for text in (
        "Covered by 10 massages — 9 sessions remaining after this visit",
        "Value of this visit",
        "Paid by prepaid package",
        "$90.00",
        "$106.95",
        "$16.95",
    ):
        assert text in html, text
    text = " ".join(pdf_text(receipt_pdf(invoice, form)).split())
    assert "Paid by prepaid package $90.00" in text and "Visit value $106.95" in text


def test_insurer_ready_fully_prepaid_visit_is_paid_not_no_charge(client, setup):
    clinic_set(insurer_ready_receipts=True)
    sold_package(
        setup["fd"], setup["patient"], package_template(setup["cat"], price=100000, quantity=10)
    )
    _, invoice = _arrived_invoice(setup)
    assert invoice.total_minor == 0 and invoice.status == "no_charge"
    html = _page(client, setup, invoice, "standard")
    assert "No charge" not in html and 'stamp-paid">Paid<' in html
    assert "Paid in full by prepaid package" in html and "$100.00" in html
    context = receipt_context(invoice)
    assert (context["total"].minor, context["prepaid"].minor, context["visit_value"].minor) == (
        0,
        10000,
        10000,
    )


def test_insurer_ready_shares_of_a_taxed_package_add_up_to_its_price(setup):
    """100.00 + 13 % = 113.00 over 3 sessions: each receipt shows its share
    with tax, to the cent."""
    clinic_set(insurer_ready_receipts=True)
    cat = setup["cat"]
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, price=10000, quantity=3, taxes=[cat["tax"]]),
    )
    assert (sold.price_minor, sold.net_minor) == (11300, 10000)
    shares = [
        receipt_context(_arrived_invoice(setup, hhmm)[1])["prepaid"].minor
        for hhmm in ("09:00", "10:00", "11:00")
    ]
    assert shares == [3766, 3767, 3767] and sum(shares) == sold.price_minor
    values = list(
        Redemption.objects.filter(sold_pass=sold)
        .order_by("pk")
        .values_list("value_minor", flat=True)
    )
    assert values == [3333, 3333, 3334]


def test_insurer_ready_off_shows_no_prepaid_value(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    _, invoice = _arrived_invoice(setup)
    context = receipt_context(invoice)
    assert context["insurer_ready"] is False and context["coverage"][0]["prepaid"].minor == 9000
    assert "Value of this visit" not in " ".join(pdf_text(receipt_pdf(invoice)).split())


# SPEC 5.5: the insurance-friendly set-up, end to end


def test_insurance_friendly_package_prepaid_as_credit_gives_receipts_of_50(client, setup):
    cat = setup["cat"]
    cat["treatment"].taxes.clear()  # keep the example round: 50.00 per visit, no tax
    template = package_template(
        cat,
        name="Physio plan (insurance)",
        price=0,
        quantity=5,
        items=[(cat["treatment"], 5000, None, None)],
    )
    sold = sold_package(setup["fd"], setup["patient"], template)
    assert sold.price_minor == 0
    # The patient prepays the whole plan as credit: a payment applied to nothing.
    payment_receive(
        actor=setup["fd"].user, patient=setup["patient"], method="debit", amount_minor=25000
    )
    assert credit_balance(setup["patient"]) == 25000
    invoices = []
    for n, hhmm in enumerate(("09:00", "10:00", "11:00"), start=1):
        _, invoice = _arrived_invoice(setup, hhmm)
        assert invoice.total_minor == 5000 and invoice.balance_minor == 5000
        credit_apply(actor=setup["fd"].user, patient=setup["patient"], invoice=invoice)
        invoice.refresh_from_db()
        assert invoice.status == "paid" and credit_balance(setup["patient"]) == 25000 - 5000 * n
        invoices.append(invoice)
    for n, invoice in enumerate(invoices, start=1):
        for form in FORMS:
            html = _page(client, setup, invoice, form)
            assert (
                f"Covered by Physio plan (insurance) — {5 - n} sessions remaining after this visit"
                in html
            )
            assert html.count("$50.00") >= 2, form  # the total and what was paid
            assert (
                "Value of this visit" not in html
            )  # nothing prepaid to show: the charge is the value
        context = receipt_context(invoice, "quick")
        assert (context["total"].minor, context["paid"].minor, context["balance"].minor) == (
            5000,
            5000,
            0,
        )
        text = " ".join(pdf_text(receipt_pdf(invoice, "standard")).split())
        assert "$50.00" in text and "Covered by Physio plan (insurance)" in text
    assert_ledger_ok()
