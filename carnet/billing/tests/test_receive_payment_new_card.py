"""Billing → Receive payment by a New card (issue 16): for an invoice that already exists, the desk
types a card into the gateway's card form (the test gateway's server-side form, or Stripe.js's
field with Stripe on), it is charged through a card attempt keyed by the form (a double submit
charges once), kept on file only if the desk ticks it, declines read as the gateway's sentence, and
a bank that asks for 3-D Secure is answered on the page as in the checkout."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from carnet.billing.models import CardAttempt, Invoice, Payment
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.billing.tests.test_three_d_secure import (
    ALWAYS_AUTHENTICATE,
    bank_check,
    card_typed_in_stripe_js,
)
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core.permissions import AccessLevel
from carnet.gateway.base import CardDeclined
from carnet.gateway.models import CardOnFile, GatewayCustomer
from carnet.gateway.services import card_entry_begin
from carnet.gateway.tests.test_stripe import stripe_client

TYPED = {"holder": "Rosalind Achebe", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
DECLINES = "4000 0000 0000 0002"


def _setup(front_desk, catalog):
    client = Client()
    client.force_login(front_desk.user)
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 8000, category=catalog["income_category"])
    url = reverse("billing:payment_new", kwargs={"pk": patient.pk})
    return {"client": client, "patient": patient, "invoice": invoice, "url": url}


@pytest.fixture
def d(db, front_desk, catalog):
    return _setup(front_desk, catalog)


def _pay(d, form_key="k1", **fields):
    data = {
        "form_key": form_key,
        "method": "new_card",
        "amount": "80.00",
        f"apply_{d['invoice'].pk}": "80.00",
        **fields,
    }
    return d["client"].post(d["url"], data)


def test_a_new_card_typed_in_the_test_gateways_form_pays_the_invoice(d):
    html = " ".join(d["client"].get(d["url"]).content.decode().split())
    assert 'value="new_card"' in html and 'name="number"' in html
    assert "for demonstrations and tests" in html and "js.stripe.com" not in html
    done = _pay(d, number="4242 4242 4242 4242", **TYPED)
    assert done.status_code == 302, done.content.decode()[:3000]
    payment = Payment.objects.get()
    assert payment.method == Payment.Method.CARD_GATEWAY and payment.amount_minor == 8000
    assert payment.gateway_charge_id and "Visa •••• 4242" in payment.reference
    assert payment.card is None and not CardOnFile.objects.exists()  # not ticked: not kept
    attempt = CardAttempt.objects.get()
    assert attempt.status == CardAttempt.Status.SUCCEEDED and attempt.card_id is None
    assert Invoice.objects.get().balance_minor == 0
    followed = d["client"].get(done["Location"]).content.decode()
    assert "Received $80.00 by Card on file / online." in followed
    assert_ledger_ok()


def test_ticked_the_new_card_is_kept_on_file_and_linked_to_the_payment(d):
    done = _pay(d, number="4242 4242 4242 4242", keep_card="on", **TYPED)
    assert done.status_code == 302
    card = CardOnFile.objects.get()
    assert (card.last4, card.holder, card.patient_id) == (
        "4242",
        "Rosalind Achebe",
        d["patient"].pk,
    )
    assert Payment.objects.get().card_id == card.pk


def test_the_same_form_posted_twice_charges_once_and_keeps_the_card_once(d):
    first = _pay(d, number="4242 4242 4242 4242", keep_card="on", **TYPED)
    again = _pay(d, number="4242 4242 4242 4242", keep_card="on", **TYPED)
    assert (first.status_code, again.status_code) == (302, 302)
    assert Payment.objects.count() == 1 and CardAttempt.objects.count() == 1
    assert CardOnFile.objects.count() == 1 and Invoice.objects.get().balance_minor == 0
    assert_ledger_ok()


def test_a_declined_new_card_shows_the_gateways_sentence_and_the_invoice_stays_owing(d):
    page = _pay(d, number=DECLINES, **TYPED)
    html = page.content.decode()
    assert page.status_code == 200 and CardDeclined.default_message in html
    assert not Payment.objects.exists() and Invoice.objects.get().balance_minor == 8000
    assert CardAttempt.objects.get().status == CardAttempt.Status.FAILED


def test_a_new_card_without_its_fields_or_a_bad_number_records_nothing(d):
    html = _pay(d).content.decode()
    assert "Needed for a new card." in html
    html = _pay(d, form_key="k2", number="1234", **TYPED).content.decode()
    assert 'class="error"' in html
    assert not Payment.objects.exists() and not CardAttempt.objects.exists()


def test_cash_still_needs_no_card(d):
    done = d["client"].post(
        d["url"],
        {
            "form_key": "k1",
            "method": "cash",
            "amount": "80.00",
            f"apply_{d['invoice'].pk}": "80.00",
        },
    )
    assert done.status_code == 302 and Payment.objects.get().method == "cash"


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_the_same_new_card_payment_sent_three_times_at_once_charges_once():
    front_desk = make_staff(AccessLevel.FRONT_DESK)
    d = _setup(front_desk, make_catalog())
    data = {
        "form_key": "race-1",
        "method": "new_card",
        "amount": "80.00",
        f"apply_{d['invoice'].pk}": "80.00",
        "number": "4242 4242 4242 4242",
        "keep_card": "on",
        **TYPED,
    }
    clients = []
    for _ in range(3):
        client = Client()
        client.force_login(front_desk.user)
        clients.append(client)
    results = race(3, lambda i: clients[i].post(d["url"], data).status_code)
    assert all(code in (200, 302) for code in results) and 302 in results, results
    assert Payment.objects.count() == 1 and CardAttempt.objects.count() == 1
    assert CardOnFile.objects.count() == 1 and Invoice.objects.get().balance_minor == 0
    assert_ledger_ok()


# ---- with Stripe on (localstripe)


@pytest.fixture
def s(stripe_gateway, db, front_desk, catalog):
    return {**_setup(front_desk, catalog), "base": stripe_gateway}


def _page(s):
    page = s["client"].get(s["url"])
    return page, page.content.decode()


def test_with_stripe_the_new_card_is_typed_into_stripe_js_and_pays_the_invoice(s):
    page, html = _page(s)
    assert not any(f'name="{n}"' in html for n in ("number", "cvc", "exp_month", "exp_year"))
    assert 'data-stripe-when="method=new_card"' in html and "js.stripe.com/v3/" in html
    done = _pay(
        s, holder="Pat Test", setup_intent=card_typed_in_stripe_js(html, "4242424242424242")
    )
    assert done.status_code == 302, done.content.decode()[:3000]
    payment = Payment.objects.get()
    assert payment.gateway_charge_id.startswith("pi_") and "Visa •••• 4242" in payment.reference
    assert Invoice.objects.get().balance_minor == 0 and not CardOnFile.objects.exists()
    assert_ledger_ok()


def test_with_stripe_a_ticked_card_is_kept_on_the_patients_customer(s):
    _, html = _page(s)
    intent = card_typed_in_stripe_js(html, "4242424242424242")
    done = _pay(s, holder="Pat Test", keep_card="on", setup_intent=intent)
    assert done.status_code == 302
    card = CardOnFile.objects.get()
    customer = GatewayCustomer.objects.get(patient=s["patient"]).customer_id
    assert stripe_client().v1.payment_methods.retrieve(card.token).customer == customer
    assert Payment.objects.get().card_id == card.pk


def test_with_stripe_a_card_number_posted_to_carnet_charges_nothing(s):
    _page(s)
    html = _pay(s, number="4242424242424242", **TYPED).content.decode()
    assert "Type the new card into the card field" in html and not CardAttempt.objects.exists()


def test_with_stripe_a_setup_intent_made_for_another_page_is_refused(s):
    other = card_entry_begin(entry_for="pay-balance:1")
    html = _pay(s, holder="Pat Test", setup_intent=other["setup_intent"]).content.decode()
    assert "No such card set-up" in html and not CardAttempt.objects.exists()


def test_with_stripe_a_decline_shows_its_sentence_and_a_fresh_card_field(s):
    _, html = _page(s)
    intent = card_typed_in_stripe_js(html, "4000000000000341")  # kept, then declined when charged
    page = _pay(s, holder="Pat Test", setup_intent=intent)
    html = page.content.decode()
    assert page.status_code == 200 and CardDeclined.default_message in html
    assert 'name="setup_intent" value=""' in html and intent not in html
    assert not Payment.objects.exists() and Invoice.objects.get().balance_minor == 8000


def test_with_stripe_a_card_whose_bank_asks_is_confirmed_on_the_page_and_recorded_once(s):
    _, html = _page(s)
    intent = card_typed_in_stripe_js(html, ALWAYS_AUTHENTICATE)
    asked = _pay(s, holder="Pat Test", setup_intent=intent)
    page = asked.content.decode()
    assert asked.status_code == 200 and "Confirm the payment with your bank" in page
    assert f"frame-src {s['base']};" in asked["Content-Security-Policy"]
    attempt = CardAttempt.objects.get()
    assert attempt.status == "pending" and Invoice.objects.get().balance_minor == 8000
    action = re.search(
        r'action="([^"]+)" class="form" novalidate data-stripe-authenticate', page
    ).group(1)
    assert action == reverse("billing:card_authenticated", args=[attempt.pk])
    # The same form posted again meanwhile: the same attempt, still waiting, nothing charged twice.
    again = _pay(s, holder="Pat Test", setup_intent=intent)
    assert "Confirm the payment with your bank" in again.content.decode()
    assert CardAttempt.objects.count() == 1 and not Payment.objects.exists()
    bank_check(s["base"], page)
    done = s["client"].post(action, {"payment_intent": attempt.gateway_id})
    assert done.status_code == 302
    assert Payment.objects.get().gateway_charge_id == attempt.gateway_id
    assert Invoice.objects.get().balance_minor == 0
    s["client"].post(action, {"payment_intent": attempt.gateway_id})
    assert Payment.objects.count() == 1
    assert_ledger_ok()
