"""The Billing tab and its forms: purchase, receive payment (once), credit,
unapply, refund, cards."""

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice, product
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import CardOnFile

pytestmark = pytest.mark.django_db


def _key(client, url):
    return client.get(url).context["form"].initial["form_key"]


@pytest.fixture
def desk(client, front_desk):
    client.force_login(front_desk.user)
    return client


def test_sell_a_product_then_take_part_cash_part_credit(desk, catalog):
    patient, oil = make_patient(), product(catalog["income_category"], price=3000, stock=4)
    url = reverse("billing:purchase_new", kwargs={"pk": patient.pk})
    response = desk.post(
        url, {"form_key": _key(desk, url), "product_0": oil.pk, "quantity_0": 2, "method": "later"}
    )
    invoice = Invoice.objects.get()
    assert (
        response["Location"] == reverse("billing:tab", kwargs={"pk": patient.pk})
        and invoice.total_minor == 6000
    )
    pay_url = reverse("billing:payment_new", kwargs={"pk": patient.pk})
    form = desk.get(pay_url + f"?invoice={invoice.pk}").context["form"]
    assert form.initial["amount"] == 6000 and form.initial[f"apply_{invoice.pk}"] == 6000
    data = {
        "form_key": form.initial["form_key"],
        "method": "cash",
        "amount": "70.00",
        f"apply_{invoice.pk}": "60.00",
    }
    asked = desk.post(pay_url, data)
    assert "Record $10.00 as credit?" in asked.content.decode() and not Payment.objects.exists()
    desk.post(pay_url, {**data, "credit_ok": "1000"})
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    tab = desk.get(reverse("billing:tab", kwargs={"pk": patient.pk})).content.decode()
    assert "$10.00" in tab and "Paid" in tab  # the extra 10.00 is credit
    assert_ledger_ok()


def test_double_submitting_a_payment_records_it_once(desk, catalog):
    patient = make_patient()
    url = reverse("billing:payment_new", kwargs={"pk": patient.pk})
    data = {"form_key": _key(desk, url), "method": "cash", "amount": "20.00"}
    desk.post(url, data)
    repeat = desk.post(url, data, follow=True)
    assert Payment.objects.count() == 1
    assert "already saved" in repeat.content.decode()


def test_payment_form_errors_stay_on_the_form(desk, catalog):
    patient = make_patient()
    invoice = manual_invoice(make_staff(), patient, 1000, category=catalog["income_category"])
    url = reverse("billing:payment_new", kwargs={"pk": patient.pk})
    response = desk.post(
        url,
        {
            "form_key": _key(desk, url),
            "method": "cash",
            "amount": "5.00",
            f"apply_{invoice.pk}": "10.00",
        },
    )
    assert response.status_code == 200 and "received only" in response.content.decode()
    response = desk.post(
        url, {"form_key": _key(desk, url), "method": "card_gateway", "amount": "10.00"}
    )
    assert "Choose a card on file" in response.content.decode()
    assert not Payment.objects.exists()


def test_apply_credit_unapply_refund_delete_buttons(client, front_desk, catalog):
    admin = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient()
    payment_receive(actor=front_desk.user, patient=patient, method="cash", amount_minor=5000)
    invoice = manual_invoice(front_desk, patient, 3000, category=catalog["income_category"])
    client.force_login(front_desk.user)
    client.post(
        reverse("billing:credit_apply", kwargs={"pk": patient.pk, "invoice_pk": invoice.pk})
    )
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    allocation = invoice.allocations.get()
    denied = client.post(
        reverse("billing:unapply", kwargs={"pk": patient.pk, "allocation_pk": allocation.pk})
    )
    assert denied.status_code == 403
    client.force_login(admin.user)
    client.post(
        reverse("billing:unapply", kwargs={"pk": patient.pk, "allocation_pk": allocation.pk})
    )
    refused = client.post(
        reverse("billing:refund", kwargs={"pk": patient.pk, "payment_pk": allocation.payment_id}),
        {"amount": "60.00"},
        follow=True,
    )
    assert "is unapplied" in refused.content.decode()
    client.post(
        reverse("billing:refund", kwargs={"pk": patient.pk, "payment_pk": allocation.payment_id}),
        {"amount": "50.00", "method": "etransfer"},
    )
    client.post(
        reverse("billing:invoice_delete", kwargs={"pk": patient.pk, "invoice_pk": invoice.pk})
    )
    invoice.refresh_from_db()
    assert invoice.deleted_at is not None
    assert_ledger_ok()


def test_adding_a_card_keeps_only_brand_last_four_and_expiry(desk):
    patient = make_patient()
    url = reverse("billing:card_new", kwargs={"pk": patient.pk})
    bad = desk.post(
        url,
        {
            "holder": "Pat",
            "number": "4242424242424241",
            "exp_month": 12,
            "exp_year": 2099,
            "cvc": "123",
        },
    )
    assert bad.status_code == 200 and not CardOnFile.objects.exists()
    desk.post(
        url,
        {
            "holder": "Pat",
            "number": "4242 4242 4242 4242",
            "exp_month": 12,
            "exp_year": 2099,
            "cvc": "123",
        },
    )
    card = CardOnFile.objects.get()
    assert (card.brand_label, card.last4) == ("Visa", "4242")
    tab = desk.get(reverse("billing:tab", kwargs={"pk": patient.pk})).content.decode()
    assert "Visa •••• 4242" in tab and "4242424242424242" not in tab


def test_billing_tab_hides_actions_a_level_cannot_use(client, catalog):
    patient = make_patient()
    client.force_login(make_staff(AccessLevel.PRACTITIONER_FRONT_DESK).user)
    tab = client.get(reverse("billing:tab", kwargs={"pk": patient.pk})).content.decode()
    assert "Receive payment" not in tab and "New purchase" not in tab
    client.force_login(make_staff(AccessLevel.FRONT_DESK, billing=False).user)
    assert client.get(reverse("billing:tab", kwargs={"pk": patient.pk})).status_code == 403


def test_the_billing_tab_shows_fifty_invoices_a_page_newest_first(client, front_desk, catalog):
    patient = make_patient()
    invoices = [
        manual_invoice(front_desk, patient, 1000, category=catalog["income_category"])
        for _ in range(52)
    ]
    client.force_login(front_desk.user)
    first = client.get(reverse("billing:tab", args=[patient.pk])).content.decode()
    assert f"#{invoices[-1].number}<" in first and f"#{invoices[0].number}<" not in first
    assert "Invoices 1–50 of 52" in first
    older = client.get(reverse("billing:tab", args=[patient.pk]) + "?invoices=2").content.decode()
    assert f"#{invoices[0].number}<" in older


def test_a_refund_form_submitted_twice_refunds_once(client, admin_staff, catalog):
    patient = make_patient()
    payment = payment_receive(
        actor=admin_staff.user, patient=patient, method="cash", amount_minor=5000
    )
    client.force_login(admin_staff.user)
    url = reverse("billing:refund", args=[patient.pk, payment.pk])
    form = {"form_key": "k1", "amount": "20.00", "method": ""}
    client.post(url, form)
    client.post(url, form)  # a double click or a retry
    payment.refresh_from_db()
    assert payment.refunded_minor == 2000
    client.post(url, {**form, "form_key": "k2"})  # a new form is a new refund
    payment.refresh_from_db()
    assert payment.refunded_minor == 4000
    assert_ledger_ok()


def test_a_cash_typo_is_asked_about_only_while_something_is_owing(desk, catalog):
    patient = make_patient()
    invoice = manual_invoice(make_staff(), patient, 111870, category=catalog["income_category"])
    url = reverse("billing:payment_new", kwargs={"pk": patient.pk})
    data = {
        "form_key": _key(desk, url),
        "method": "cash",
        "amount": "5000.00",
        f"apply_{invoice.pk}": "1118.70",
    }
    asked = desk.post(url, data)
    assert asked.status_code == 200 and "Record $3,881.30 as credit?" in asked.content.decode()
    assert (
        'name="credit_ok" value="388130"' in asked.content.decode() and not Payment.objects.exists()
    )
    assert (
        "as credit?" in desk.post(url, {**data, "credit_ok": "1"}).content.decode()
    )  # another amount's yes
    assert desk.post(url, {**data, "credit_ok": "388130"}).status_code == 302
    assert Payment.objects.get().unapplied_minor == 388130
    prepay = desk.post(url, {"form_key": _key(desk, url), "method": "cash", "amount": "50.00"})
    assert (
        prepay.status_code == 302 and Payment.objects.count() == 2
    )  # nothing owing: a deliberate prepayment
