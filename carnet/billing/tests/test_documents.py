"""Receipts (three forms, HTML and PDF) and statements, staff-side and from the portal."""

import io

import pytest
from django.urls import reverse
from pypdf import PdfReader

from carnet.billing.documents import receipt_context, receipt_pdf, statement_context, statement_pdf
from carnet.billing.invoicing import LineInput, invoice_create
from carnet.billing.payments import payment_receive, payment_refund
from carnet.billing.tests.factories import manual_invoice
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.models import FamilyLink
from carnet.people.services import patient_portal_enable

pytestmark = pytest.mark.django_db


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.fixture
def clinic(db):
    clinic = clinic_get()
    clinic.name, clinic.invoice_prefix, clinic.address = (
        "Harbour Wellness",
        "HW-",
        "10 Queens Quay W\nToronto",
    )
    clinic.save()
    return clinic


@pytest.fixture
def sale(clinic, front_desk, catalog):
    """A massage (90.00 + 13 % tax) and a discounted towel, part paid in cash."""
    tax = catalog["tax"]
    tax.registration_number = "81234 5678 RT0001"
    tax.save()
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    invoice = invoice_create(
        actor=front_desk.user,
        patient=patient,
        location=catalog["location"],
        lines=[
            LineInput(treatment_id=catalog["treatment"].pk),
            LineInput(
                description="Hot towel",
                unit_price_minor=1000,
                quantity=2,
                adjustment_minor=500,
                income_category_id=catalog["income_category"].pk,
                tax_ids=[],
            ),
        ],
    )  # 10500 + 1170 tax = 11670
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=5000,
        allocations=[(invoice, 5000)],
    )
    return invoice


@pytest.mark.parametrize("form", ["quick", "standard", "detailed"])
def test_receipt_page_shows_number_total_and_balance(client, front_desk, sale, form):
    client.force_login(front_desk.user)
    response = client.get(reverse("billing:receipt", args=[sale.pk]) + f"?form={form}")
    html = response.content.decode()
    assert response.status_code == 200
    number = f"HW-{sale.number}"
    for text in (
        number,
        "$116.70",
        "$66.70",
        "Harbour Wellness",
        "81234 5678 RT0001",
        "Marguerite Okafor",
        "HST",
    ):
        assert text in html, text
    assert ("Hot towel" in html) == (form != "quick")  # quick is totals only
    assert ("Payments applied" in html) == (form != "quick")
    assert ("Original price" in html) == (form == "detailed")
    assert ("−$5.00" in html) == (form == "detailed")  # the towel's discount


def test_receipt_context_adds_up(sale):
    context = receipt_context(sale, "detailed")
    assert [str(t) for _, t in context["taxes"]] == ["$11.70"]
    assert sum(line.amount.minor for line in context["lines"]) == context["subtotal"].minor == 10500
    assert [(p["method"], str(p["amount"])) for p in context["payments"]] == [("Cash", "$50.00")]
    assert context["status"] == "partially_paid" and str(context["balance"]) == "$66.70"


@pytest.mark.parametrize("form", ["quick", "standard", "detailed"])
def test_receipt_pdf_contains_number_and_total(sale, form):
    text = pdf_text(receipt_pdf(sale, form))
    assert f"HW-{sale.number}" in text and "$116.70" in text and "$66.70" in text


def test_receipt_pdf_download_names_the_invoice(client, front_desk, sale):
    client.force_login(front_desk.user)
    response = client.get(reverse("billing:receipt_pdf", args=[sale.pk]) + "?form=detailed")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="receipt-HW-{sale.number}.pdf"'
    assert "Hot towel" in pdf_text(response.content)


def test_paid_and_no_charge_stamps(clinic, front_desk, catalog):
    patient = make_patient()
    free = manual_invoice(front_desk, patient, 0, category=catalog["income_category"])
    assert "No charge" in pdf_text(receipt_pdf(free, "quick"))
    paid = manual_invoice(front_desk, patient, 2500, category=catalog["income_category"])
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="debit",
        amount_minor=2500,
        allocations=[(paid, 2500)],
    )
    text = pdf_text(receipt_pdf(paid, "standard"))
    assert "PAID" in text and "Debit" in text and "$25.00" in text  # the stamp is upper-cased


def test_unknown_receipt_form_is_a_clear_4xx(client, front_desk, sale):
    client.force_login(front_desk.user)
    response = client.get(reverse("billing:receipt", args=[sale.pk]) + "?form=fancy")
    assert (
        response.status_code == 422 and "quick, standard or detailed" in response.content.decode()
    )
    assert client.get(reverse("billing:receipt", args=[999999])).status_code == 404


def test_receipts_need_billing_access(client, sale):
    client.force_login(make_staff(AccessLevel.FRONT_DESK, billing=False).user)
    assert client.get(reverse("billing:receipt_pdf", args=[sale.pk])).status_code == 403


def test_statement_totals(clinic, front_desk, admin_staff, catalog):
    patient = make_patient(first_name="Leon", last_name="Brandt")
    cat = catalog["income_category"]
    first = manual_invoice(front_desk, patient, 10000, category=cat)
    manual_invoice(front_desk, patient, 4000, category=cat)
    payment = payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=13000,
        allocations=[(first, 10000)],
    )  # 30.00 left as credit
    payment_refund(actor=admin_staff.user, payment=payment, amount_minor=1000)  # 20.00 credit left
    context = statement_context(patient)
    assert (str(context["owing"]), str(context["credit"]), str(context["net"])) == (
        "$40.00",
        "$20.00",
        "$20.00",
    )
    assert [i["balance"].minor for i in context["open_invoices"]] == [4000]
    assert (
        context["activity"][-1]["balance"] == context["net"]
    )  # the running balance ends at the net
    text = pdf_text(statement_pdf(patient))
    assert (
        "Statement of account" in text
        and "Leon Brandt" in text
        and "$40.00" in text
        and "$20.00" in text
    )


def test_statement_page_and_pdf(client, front_desk, sale):
    client.force_login(front_desk.user)
    html = client.get(reverse("billing:statement", args=[sale.patient_id])).content.decode()
    assert f"HW-{sale.number}" in html and "$66.70" in html
    response = client.get(reverse("billing:statement_pdf", args=[sale.patient_id]))
    assert response["Content-Disposition"].startswith('attachment; filename="statement-')
    assert "$66.70" in pdf_text(response.content)


@pytest.fixture
def portal_patient(owner):
    def make(**fields):
        patient = make_patient(**fields)
        patient_portal_enable(actor=owner.user, patient=patient, password="a long enough password")
        patient.refresh_from_db()
        return patient

    return make


def test_patient_downloads_own_and_dependants_receipts_but_not_others(
    client, front_desk, catalog, portal_patient
):
    cat = catalog["income_category"]
    me, child, stranger = portal_patient(), make_patient(), make_patient()
    FamilyLink.objects.create(patient=me, relative=child, kind=FamilyLink.Kind.GUARDIAN)
    mine, childs, theirs = (
        manual_invoice(front_desk, p, 1500, category=cat) for p in (me, child, stranger)
    )
    client.force_login(me.user)
    home = client.get(reverse("portal:home")).content.decode()
    assert (
        reverse("portal:receipt_pdf", args=[mine.pk]) in home
        and reverse("portal:receipt_pdf", args=[childs.pk]) in home
    )
    for invoice in (mine, childs):
        response = client.get(reverse("portal:receipt_pdf", args=[invoice.pk]))
        assert response.status_code == 200 and str(invoice.number) in pdf_text(response.content)
    assert client.get(reverse("portal:receipt_pdf", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("portal:receipt_pdf", args=[999999])).status_code == 404
    client.logout()
    assert (
        client.get(reverse("portal:receipt_pdf", args=[mine.pk])).status_code == 302
    )  # to the portal log-in
