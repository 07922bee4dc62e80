"""Billing → New purchase, one checkout: packages and products sold together with the payment
taken in the same step; a refused payment refuses the sale; the over-tender question; credit and
gift cards as tenders; a double submit sells once."""

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import product
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.passes.models import Pass
from carnet.passes.selectors import pass_unlocked
from carnet.passes.tests.factories import package_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(client, front_desk, catalog):
    client.force_login(front_desk.user)
    patient = make_patient()
    return {"client": client, "fd": front_desk, "cat": catalog, "patient": patient,
            "url": reverse("billing:purchase_new", kwargs={"pk": patient.pk}),
            "template": package_template(catalog, name="5 massages", price=40000, quantity=5),
            "oil": product(catalog["income_category"], price=2500, stock=5)}


def _post(s, **data):
    return s["client"].post(s["url"], {"form_key": data.pop("form_key", "k1"), "method": "cash", **data})


def test_the_new_purchase_page_offers_packages(s):
    page = s["client"].get(s["url"]).content.decode()
    assert "5 massages — $400.00" in page and "Packages" in page and "Oil 2500-5 — $25.00" in page


def test_a_package_and_a_product_sold_and_paid_in_one_step(s):
    response = _post(s, package_0=s["template"].pk, product_0=s["oil"].pk, quantity_0=2)
    assert response.status_code == 302 and response["Location"] == reverse("billing:tab", kwargs={"pk": s["patient"].pk})
    sold = Pass.objects.get()
    assert sold.location == s["cat"]["location"] and pass_unlocked(sold) == 5  # paid: usable at once
    invoices = Invoice.objects.order_by("pk")
    assert [i.total_minor for i in invoices] == [40000, 5000] and all(i.balance_minor == 0 for i in invoices)
    payment = Payment.objects.get()
    assert payment.amount_minor == 45000 and payment.unapplied_minor == 0
    message = s["client"].get(response["Location"]).content.decode()
    assert "$450.00 in all — paid." in message
    assert_ledger_ok()


def test_part_payment_fills_the_package_first(s):
    _post(s, package_0=s["template"].pk, product_0=s["oil"].pk, amount="400.00")
    package_invoice, product_invoice = Invoice.objects.order_by("pk")
    assert package_invoice.balance_minor == 0 and product_invoice.balance_minor == 2500
    assert pass_unlocked(Pass.objects.get()) == 5


def test_pay_later_leaves_it_owing(s):
    _post(s, package_0=s["template"].pk, method="later")
    assert Invoice.objects.get().balance_minor == 40000 and not Payment.objects.exists()


def test_a_typo_above_the_total_is_asked_about_and_nothing_is_sold_until_answered(s):
    page = _post(s, package_0=s["template"].pk, amount="4000.00").content.decode()
    assert "Record $3,600.00 as credit?" in page and 'value="360000"' in page
    assert not Pass.objects.exists() and not Invoice.objects.exists() and not Payment.objects.exists()
    _post(s, package_0=s["template"].pk, amount="4000.00", credit_ok="360000")
    assert Payment.objects.get().unapplied_minor == 360000 and Pass.objects.count() == 1


def test_a_refused_payment_refuses_the_sale(s):
    page = _post(s, package_0=s["template"].pk, method="gift_card", gift_card_code="NOPE-1").content.decode()
    assert "No gift card" in page
    assert not Pass.objects.exists() and not Invoice.objects.exists()
    assert "Enter the gift card" in _post(s, product_0=s["oil"].pk, method="gift_card").content.decode()


def test_account_credit_pays_the_sale(s):
    payment_receive(actor=s["fd"].user, patient=s["patient"], method="cash", amount_minor=3000)
    _post(s, product_0=s["oil"].pk, method="credit")
    invoice = Invoice.objects.get()
    assert invoice.balance_minor == 0 and Payment.objects.get().unapplied_minor == 500
    assert_ledger_ok()


def test_nothing_chosen_or_a_half_described_item_is_refused(s):
    assert "Choose at least one package" in _post(s).content.decode()
    assert "description, price and income category" in _post(s, other_description="Mat").content.decode()
    assert not Invoice.objects.exists()


def test_double_submit_sells_once(s):
    first, second = _post(s, package_0=s["template"].pk), _post(s, package_0=s["template"].pk)
    assert first.status_code == second.status_code == 302
    assert Pass.objects.count() == 1 and Payment.objects.count() == 1
