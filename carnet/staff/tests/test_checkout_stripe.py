"""Billing → New purchase with Stripe on (against localstripe): the "New card" is typed into
Stripe.js's own field (no card number, expiry or CVC field of Carnet's), Carnet gets a SetupIntent
made for this staff member's checkout; a card whose bank asks is confirmed on the page with
Stripe.js and recorded once, read from Stripe by the PaymentIntent id Carnet stored."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from carnet.billing.models import CardAttempt, Invoice, Payment
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.billing.tests.test_stripe_webhooks import deliver, event
from carnet.billing.tests.test_three_d_secure import (
    ALWAYS_AUTHENTICATE,
    bank_check,
    card_typed_in_stripe_js,
)
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.services import card_entry_begin
from carnet.gateway.tests.test_stripe import stripe_client
from carnet.passes.models import Pass
from carnet.passes.selectors import visit_redemption
from carnet.passes.tests.factories import membership_template, package_template
from carnet.staff.tests.test_checkout import checkout_appointment


@pytest.fixture
def s(stripe_gateway, db, front_desk, catalog):
    client = Client()
    client.force_login(front_desk.user)
    patient = make_patient()
    return {
        "client": client,
        "fd": front_desk,
        "patient": patient,
        "base": stripe_gateway,
        "catalog": catalog,
        "url": reverse("billing:purchase_new", kwargs={"pk": patient.pk}),
        "template": package_template(catalog, name="5 massages", price=40000, quantity=5),
    }


def _page(s):
    page = s["client"].get(s["url"])
    return page, page.content.decode()


def _sell(s, html, number, **extra):
    return s["client"].post(
        s["url"],
        {
            "form_key": "k1",
            "package_0": s["template"].pk,
            "method": "new_card",
            "holder": "Pat Test",
            "setup_intent": card_typed_in_stripe_js(html, number),
            **extra,
        },
    )


def test_the_new_card_is_typed_into_stripe_js_and_the_page_admits_only_stripes_origins(s):
    page, html = _page(s)
    assert (
        'name="number"' not in html and 'name="cvc"' not in html and 'name="exp_month"' not in html
    )
    assert 'data-stripe-when="method=new_card"' in html and "js.stripe.com/v3/" in html
    csp = page["Content-Security-Policy"]
    assert f"script-src 'self' {s['base']};" in csp and f"frame-src {s['base']};" in csp
    sold = _sell(s, html, "4242424242424242")
    assert sold.status_code == 302
    payment = Payment.objects.get()
    assert payment.gateway_charge_id.startswith("pi_") and Invoice.objects.get().balance_minor == 0
    assert "Visa •••• 4242" in payment.reference
    assert_ledger_ok()


def test_a_card_number_posted_to_carnet_is_ignored_and_without_stripes_card_nothing_is_charged(s):
    _, html = _page(s)
    posted = s["client"].post(
        s["url"],
        {
            "form_key": "k1",
            "package_0": s["template"].pk,
            "method": "new_card",
            "holder": "Pat",
            "number": "4242424242424242",
            "exp_month": "12",
            "exp_year": "2040",
            "cvc": "123",
        },
    )
    assert (
        posted.status_code == 200
        and "Type the new card into the card field" in posted.content.decode()
    )
    assert not Payment.objects.exists() and not Invoice.objects.exists()


def test_a_setup_intent_made_for_another_page_is_refused(s):
    other = card_entry_begin(entry_for="pay-balance:1")
    response = s["client"].post(
        s["url"],
        {
            "form_key": "k1",
            "package_0": s["template"].pk,
            "method": "new_card",
            "holder": "Pat",
            "setup_intent": other["setup_intent"],
        },
    )
    assert response.status_code == 200 and "No such card set-up" in response.content.decode()
    assert not Payment.objects.exists() and not Invoice.objects.exists()


def test_cash_is_not_held_up_by_the_card_field(s):
    sold = s["client"].post(
        s["url"], {"form_key": "k1", "package_0": s["template"].pk, "method": "cash"}
    )
    assert sold.status_code == 302 and Payment.objects.get().method == "cash"


def test_a_card_whose_bank_asks_is_confirmed_on_the_page_and_recorded_once(s):
    _, html = _page(s)
    asked = _sell(s, html, ALWAYS_AUTHENTICATE)
    page = asked.content.decode()
    assert asked.status_code == 200 and "Confirm the payment with your bank" in page
    assert "bank asks them to confirm this payment of $400.00" in page
    assert f"frame-src {s['base']};" in asked["Content-Security-Policy"]
    attempt = CardAttempt.objects.get()
    assert (
        attempt.status == "pending" and Invoice.objects.get().balance_minor == 40000
    )  # sold, owing meanwhile
    action = re.search(
        r'action="([^"]+)" class="form" novalidate data-stripe-authenticate', page
    ).group(1)
    assert action == reverse("billing:card_authenticated", args=[attempt.pk])
    # Posted with another PaymentIntent's id: refused, nothing recorded.
    wrong = s["client"].post(action, {"payment_intent": "pi_someone_else"})
    assert wrong.status_code == 302 and not Payment.objects.exists()
    still = s["client"].post(
        action, {"payment_intent": attempt.gateway_id}
    )  # before the bank's check
    assert (
        "Confirm the payment with your bank" in still.content.decode()
        and not Payment.objects.exists()
    )
    bank_check(s["base"], page)
    done = s["client"].post(action, {"payment_intent": attempt.gateway_id})
    assert done.status_code == 302 and done["Location"].endswith(
        f"/patients/{s['patient'].pk}/billing/"
    )
    assert Payment.objects.get().gateway_charge_id == attempt.gateway_id
    assert Invoice.objects.get().balance_minor == 0
    deliver(
        event(
            "payment_intent.succeeded",
            stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).to_dict(),
        )
    )
    s["client"].post(action, {"payment_intent": attempt.gateway_id})
    assert Payment.objects.count() == 1
    assert_ledger_ok()


def test_a_new_card_kept_for_a_membership_is_confirmed_on_the_page_when_its_bank_asks(s):
    # Kept on file for the cycles, the card is still typed here with its holder at the desk: the
    # bank's check is answered on the page, not refused as for a card charged while away.
    monthly = membership_template(s["catalog"], name="Wellness monthly", price=6000)
    _, html = _page(s)
    asked = _sell(
        s, html, ALWAYS_AUTHENTICATE, membership=monthly.pk, membership_payment="automatic"
    )
    page = asked.content.decode()
    assert asked.status_code == 200 and "Confirm the payment with your bank" in page
    attempt = CardAttempt.objects.get()
    membership = Pass.objects.get(kind="membership")
    assert attempt.status == "pending" and attempt.card_id == membership.card_id is not None
    bank_check(s["base"], page)
    done = s["client"].post(
        reverse("billing:card_authenticated", args=[attempt.pk]),
        {"payment_intent": attempt.gateway_id},
    )
    assert done.status_code == 302 and Payment.objects.get().card_id == membership.card_id
    assert all(i.balance_minor == 0 for i in Invoice.objects.all())
    assert_ledger_ok()


def test_sold_from_an_appointment_the_package_covers_it_once_the_bank_has_confirmed(s):
    appointment = checkout_appointment({**s, "cat": s["catalog"]})
    page = s["client"].get(s["url"], {"appointment": appointment.pk}).content.decode()
    asked = s["client"].post(
        s["url"],
        {
            "form_key": "k1",
            "package_0": s["template"].pk,
            "method": "new_card",
            "holder": "Pat Test",
            "appointment": appointment.pk,
            "setup_intent": card_typed_in_stripe_js(page, ALWAYS_AUTHENTICATE),
        },
    )
    html = asked.content.decode()
    assert asked.status_code == 200 and "Confirm the payment with your bank" in html
    attempt = CardAttempt.objects.get()
    visit = appointment.visits.get()
    assert visit_redemption(visit) is None  # not paid yet: nothing covers the visit meanwhile
    action = re.search(
        r'action="([^"]+)" class="form" novalidate data-stripe-authenticate', html
    ).group(1)
    action = action.replace("&amp;", "&")
    assert action.startswith(
        reverse("billing:purchase_authenticated", args=[s["patient"].pk, attempt.pk])
    )
    bank_check(s["base"], html)
    done = s["client"].post(action, {"payment_intent": attempt.gateway_id})
    assert done.status_code == 302 and f"open={appointment.pk}" in done["Location"]
    live = visit_redemption(visit)
    assert live is not None and live.sold_pass.template_id == s["template"].pk
    followed = s["client"].get(done["Location"]).content.decode()
    assert "5 massages now covers the appointment." in followed
    again = s["client"].post(
        action, {"payment_intent": attempt.gateway_id}
    )  # the same return twice
    assert again.status_code == 302 and Payment.objects.count() == 1
    assert visit_redemption(visit).pk == live.pk
    assert_ledger_ok()


def test_only_staff_who_take_payments_may_confirm(s, db):
    _, html = _page(s)
    _sell(s, html, ALWAYS_AUTHENTICATE)
    attempt = CardAttempt.objects.get()
    url = reverse("billing:card_authenticated", args=[attempt.pk])
    assert Client().post(url, {"payment_intent": attempt.gateway_id}).status_code in (302, 403)
    practitioner = make_staff(AccessLevel.PRACTITIONER_LIMITED)
    client = Client()
    client.force_login(practitioner.user)
    assert client.post(url, {"payment_intent": attempt.gateway_id}).status_code == 403
    assert s["client"].get(url).status_code == 405
    assert not Payment.objects.exists()


def test_the_test_gateway_keeps_its_form_and_says_so(db, front_desk, catalog):
    client = Client()
    client.force_login(front_desk.user)
    html = client.get(
        reverse("billing:purchase_new", kwargs={"pk": make_patient().pk})
    ).content.decode()
    assert (
        'name="number"' in html
        and "built-in test gateway, for demonstrations and tests only" in html
    )
    assert "js.stripe.com" not in html
