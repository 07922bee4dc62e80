"""The billing API: invoices, payments, credit, unapply, refunds and cards, with Idempotency-Key."""

import io

import pytest
from pypdf import PdfReader

from carnet.billing.models import Invoice, Payment
from carnet.billing.tests.factories import product
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, Api, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.people.services import family_link_add, patient_portal_enable

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(front_desk):
    return Api(front_desk.user)


def _sell(api, patient, category, price=5000):
    response = api.post(
        "/invoices",
        {
            "patient_id": patient.pk,
            "lines": [
                {
                    "description": "Consultation",
                    "unit_price_minor": price,
                    "income_category_id": category.pk,
                }
            ],
        },
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_sell_then_pay_with_an_idempotency_key_records_one_payment(desk, catalog):
    patient = make_patient()
    invoice = _sell(desk, patient, catalog["income_category"])
    assert invoice["status"] == "unpaid" and invoice["balance_minor"] == 5000
    body = {
        "patient_id": patient.pk,
        "method": "cash",
        "amount_minor": 6000,
        "allocations": [{"invoice_id": invoice["id"], "amount_minor": 5000}],
    }
    first = desk.post("/payments", body, **{"Idempotency-Key": "pay-1"})
    again = desk.post("/payments", body, **{"Idempotency-Key": "pay-1"})
    assert first.status_code == again.status_code == 201 and first.content == again.content
    assert Payment.objects.count() == 1
    assert desk.get(f"/patients/{patient.pk}/account").json() == {
        "patient_id": patient.pk,
        "owing_minor": 0,
        "credit_minor": 1000,
        "currency": "CAD",
    }
    assert desk.get(f"/invoices/{invoice['id']}").json()["status"] == "paid"
    assert_ledger_ok()


def test_product_sale_with_taxes_from_the_product(desk, catalog):
    oil = product(catalog["income_category"], price=2000, taxes=[catalog["tax"]])
    response = desk.post(
        "/invoices",
        {"patient_id": make_patient().pk, "lines": [{"product_id": oil.pk, "quantity": 2}]},
    )
    data = response.json()
    assert data["total_minor"] == 4520 and data["lines"][0]["taxes"][0]["amount_minor"] == 520


def test_errors_are_problems_naming_the_field(desk, catalog):
    patient = make_patient()
    response = desk.post(
        "/invoices",
        {"patient_id": patient.pk, "lines": [{"description": "x", "unit_price_minor": 100}]},
    )
    assert (
        response.status_code == 422
        and response.json()["errors"][0]["field"] == "lines.0.income_category_id"
    )
    response = desk.post("/invoices", {"patient_id": patient.pk, "lines": []})
    assert response.status_code == 422
    invoice = _sell(desk, patient, catalog["income_category"], price=1000)
    over = desk.post(
        "/payments",
        {
            "patient_id": patient.pk,
            "method": "cash",
            "amount_minor": 5000,
            "allocations": [{"invoice_id": invoice["id"], "amount_minor": 2000}],
        },
    )
    assert over.status_code == 409 and over.json()["code"] == "over_apply"
    other = desk.post(
        "/payments",
        {
            "patient_id": patient.pk,
            "method": "cash",
            "amount_minor": 500,
            "allocations": [{"invoice_id": 999999, "amount_minor": 100}],
        },
    )
    assert other.status_code == 422
    assert (
        desk.post(
            "/payments", {"patient_id": patient.pk, "method": "gold", "amount_minor": 5}
        ).status_code
        == 422
    )
    assert not Payment.objects.exists()


def test_apply_credit_unapply_refund_and_delete(front_desk, admin_staff, catalog):
    desk, admin = Api(front_desk.user), Api(admin_staff.user)
    patient = make_patient()
    payment = desk.post(
        "/payments", {"patient_id": patient.pk, "method": "debit", "amount_minor": 3000}
    ).json()
    invoice = _sell(desk, patient, catalog["income_category"], price=2000)
    allocations = desk.post(
        f"/patients/{patient.pk}/credit/apply", {"invoice_id": invoice["id"]}
    ).json()
    assert [a["amount_minor"] for a in allocations] == [2000]
    refused = admin.delete(f"/invoices/{invoice['id']}")
    assert refused.status_code == 409 and refused.json()["code"] == "invoice_has_payments"
    assert desk.post(f"/allocations/{allocations[0]['id']}/unapply").status_code == 403
    assert admin.post(f"/allocations/{allocations[0]['id']}/unapply").json()["unapplied_at"]
    assert admin.delete(f"/invoices/{invoice['id']}").json()["status"] == "deleted"
    refund = admin.post(
        f"/payments/{payment['id']}/refunds", {"amount_minor": 3000, "method": "cash"}
    )
    assert refund.status_code == 201
    assert admin.get(f"/patients/{patient.pk}/account").json()["credit_minor"] == 0
    assert_ledger_ok()


def test_card_on_file_payment_retried_with_its_key_charges_once(desk, catalog):
    patient = make_patient()
    card = desk.post(
        f"/patients/{patient.pk}/cards",
        {
            "number": "4242 4242 4242 4242",
            "exp_month": 12,
            "exp_year": 2099,
            "cvc": "123",
            "holder": "Pat Test",
        },
    )
    assert (
        card.status_code == 201 and card.json()["last4"] == "4242" and "number" not in card.json()
    )
    invoice = _sell(desk, patient, catalog["income_category"])
    body = {
        "patient_id": patient.pk,
        "method": "card_gateway",
        "amount_minor": 5000,
        "card_id": card.json()["id"],
        "allocations": [{"invoice_id": invoice["id"], "amount_minor": 5000}],
    }
    assert desk.post("/payments", body, **{"Idempotency-Key": "card-1"}).status_code == 201
    assert desk.post("/payments", body, **{"Idempotency-Key": "card-1"}).status_code == 201
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.count() == 1


def test_declined_card_is_a_402_and_records_nothing(desk, catalog):
    patient = make_patient()
    card = desk.post(
        f"/patients/{patient.pk}/cards",
        {
            "number": "4000000000000002",
            "exp_month": 12,
            "exp_year": 2099,
            "cvc": "123",
            "holder": "Pat",
        },
    ).json()
    response = desk.post(
        "/payments",
        {
            "patient_id": patient.pk,
            "method": "card_gateway",
            "amount_minor": 100,
            "card_id": card["id"],
        },
        **{"Idempotency-Key": "declined-1"},
    )
    assert response.status_code == 402 and response.json()["code"] == "card_declined"
    assert not Payment.objects.exists()


def test_patients_read_their_own_and_dependants_billing_only(desk, catalog, owner):
    me, child, stranger = make_patient(email="me@example.test"), make_patient(), make_patient()
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    family_link_add(actor=owner.user, patient=me, relative=child, kind="guardian")
    for p in (me, child, stranger):
        _sell(desk, p, catalog["income_category"])
    me.refresh_from_db()
    portal = Api(me.user)
    assert len(portal.get(f"/patients/{me.pk}/invoices").json()) == 1
    assert len(portal.get(f"/patients/{child.pk}/invoices").json()) == 1
    assert portal.get(f"/patients/{stranger.pk}/invoices").status_code == 404
    stranger_invoice = Invoice.objects.get(patient=stranger)
    assert portal.get(f"/invoices/{stranger_invoice.pk}").status_code == 404
    assert (
        portal.post(
            "/payments", {"patient_id": me.pk, "method": "cash", "amount_minor": 100}
        ).status_code
        == 403
    )


def test_staff_without_billing_access_see_no_invoices(catalog):
    api = Api(make_staff(AccessLevel.FULL_ACCESS, billing=False).user)
    response = api.get(f"/patients/{make_patient().pk}/invoices")
    assert response.status_code == 403 and "billing access" in response.json()["detail"]


def test_a_line_can_credit_a_staff_member(desk, catalog):
    practitioner = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK, practitioner=True)
    body = {
        "patient_id": make_patient().pk,
        "lines": [{"treatment_id": catalog["treatment"].pk, "staff_id": practitioner.pk}],
    }
    assert desk.post("/invoices", body).json()["lines"][0]["staff_id"] == practitioner.pk
    body["lines"][0]["staff_id"] = 999999
    response = desk.post("/invoices", body)
    assert (
        response.status_code == 422 and response.json()["errors"][0]["field"] == "lines.0.staff_id"
    )


def test_receipt_and_statement_pdfs_and_emails_through_the_api(
    desk, catalog, mailoutbox, django_capture_on_commit_callbacks
):
    patient = make_patient(email="ana@example.test")
    invoice = _sell(desk, patient, catalog["income_category"], price=4321)
    pdf = desk.get(f"/invoices/{invoice['id']}/receipt.pdf?form=detailed")
    assert pdf["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert str(invoice["number"]) in text and "43.21" in text
    assert desk.get(f"/invoices/{invoice['id']}/receipt.pdf?form=fancy").status_code == 422
    assert desk.get(f"/patients/{patient.pk}/statement.pdf").content.startswith(b"%PDF")
    with django_capture_on_commit_callbacks(execute=True):  # email leaves only after commit
        assert desk.post(f"/invoices/{invoice['id']}/receipt/email").status_code == 202
        assert desk.post(f"/patients/{patient.pk}/pay-balance-request").status_code == 202
    assert [m.to for m in mailoutbox] == [["ana@example.test"], ["ana@example.test"]]
    nobody = make_patient(email="")
    refused = desk.post(f"/patients/{nobody.pk}/pay-balance-request")
    assert refused.status_code in (409, 422) and "email" in refused.json()["detail"]
