"""3-D Secure on charges made while the card holder is at the page (against localstripe).

localstripe does what Stripe does with its 3-D Secure test cards: confirming the PaymentIntent
leaves it `requires_action` until the page completes the bank's check through Stripe.js (played
here by a direct call to localstripe's authentication endpoint, as its fake Stripe.js makes). The
attempt waits, pending, with its PaymentIntent id; the page's second post, Stripe's webhook and
reconciliation each read the outcome from Stripe by that id and it is recorded once."""

import json
import re
import urllib.request

import pytest
from django.core.management import call_command
from django.test import Client

from carnet.billing import card_attempts
from carnet.billing.emails import pay_link_token
from carnet.billing.models import CardAttempt, Payment
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.billing.tests.test_stripe_webhooks import deliver, event
from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import CardOnFile
from carnet.gateway.tests.test_stripe import browser_payment_method, stripe_client
from carnet.giftcards.models import GiftCard
from carnet.passes.models import Pass
from carnet.passes.tests.factories import membership_template, package_template
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

ALWAYS_AUTHENTICATE = "4000002760003184"  # Stripe's test card whose bank asks on every payment


@pytest.fixture
def owing(stripe_gateway, db, catalog):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient(email="pat@example.test")
    manual_invoice(staff, patient, 8000, category=catalog["income_category"])
    return patient


def card_typed_in_stripe_js(html, number):
    """What Stripe.js does on the card page: the SetupIntent confirmed with the card (its own 3-D
    Secure step for the set-up completed too, as localstripe's Stripe.js does)."""
    client_secret, setup_intent = re.search(
        r'data-client-secret="((seti_\w+)_secret_\w+)"', html
    ).groups()
    found = stripe_client().v1.setup_intents.confirm(
        setup_intent,
        params={"client_secret": client_secret, "payment_method": browser_payment_method(number)},
    )
    if found.status == "requires_action":
        stripe_client().v1.setup_intents.confirm(
            setup_intent, params={"client_secret": client_secret}
        )
    return setup_intent


def bank_check(base, html, *, success=True):
    """What Stripe.js's handleNextAction does with the PaymentIntent's client secret in
    the bank's window."""
    client_secret = re.search(r'data-client-secret="((pi_\w+)_secret_\w+)"', html).group(1)
    pi = client_secret.split("_secret_")[0]
    request = urllib.request.Request(
        f"{base}/v1/payment_intents/{pi}/_authenticate?success={'true' if success else 'false'}",
        data=json.dumps({"key": "pk_test_carnet", "client_secret": client_secret}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()
    return pi


def hidden_fields(html):
    form = html.split("data-stripe-authenticate", 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


def pay_until_the_bank_asks(owing):
    url = f"/portal/pay/{pay_link_token(owing)}/"
    html = Client().get(url).content.decode()
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    setup_intent = card_typed_in_stripe_js(html, ALWAYS_AUTHENTICATE)
    asked = Client().post(
        url, {"form_key": key, "holder": "Pat Test", "setup_intent": setup_intent}
    )
    return url, asked


def test_the_bank_asks_the_page_completes_its_check_and_the_payment_is_recorded_once(
    stripe_gateway, owing
):
    url, asked = pay_until_the_bank_asks(owing)
    html = asked.content.decode()
    assert (
        asked.status_code == 200
        and "Confirm the payment with your bank" in html
        and "$80.00" in html
    )
    assert f"script-src 'self' {stripe_gateway};" in asked["Content-Security-Policy"]
    attempt = CardAttempt.objects.get()
    assert (
        attempt.status == "pending"
        and attempt.gateway_id.startswith("pi_")
        and not Payment.objects.exists()
    )
    assert (
        stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).status == "requires_action"
    )
    fields = hidden_fields(html)
    assert fields["payment_intent"] == attempt.gateway_id and "setup_intent" not in fields
    # Posted again before the check is done (a double click): still waiting, nothing charged twice.
    again = Client().post(url, fields)
    assert (
        "Confirm the payment with your bank" in again.content.decode()
        and not Payment.objects.exists()
    )
    assert bank_check(stripe_gateway, html) == attempt.gateway_id
    done = Client().post(url, fields)
    assert done.status_code == 302 and "/paid/" in done["Location"]
    payment = Payment.objects.get()
    assert (payment.amount_minor, payment.gateway_charge_id) == (8000, attempt.gateway_id)
    # Stripe's webhook afterwards, twice, and the page posted once more: nothing more.
    intent = stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).to_dict()
    deliver(event("payment_intent.succeeded", intent))
    deliver(event("payment_intent.succeeded", intent))
    assert Client().post(url, fields).status_code == 302
    assert Payment.objects.count() == 1 and CardAttempt.objects.get().status == "succeeded"
    assert_ledger_ok()


def test_the_webhook_comes_first_and_the_page_then_finds_the_payment(stripe_gateway, owing):
    url, asked = pay_until_the_bank_asks(owing)
    html = asked.content.decode()
    pi = bank_check(stripe_gateway, html)
    assert (
        deliver(
            event(
                "payment_intent.succeeded",
                stripe_client().v1.payment_intents.retrieve(pi).to_dict(),
            )
        ).status_code
        == 200
    )
    assert Payment.objects.get().gateway_charge_id == pi
    done = Client().post(url, hidden_fields(html))
    assert done.status_code == 302 and "/paid/" in done["Location"] and Payment.objects.count() == 1
    assert_ledger_ok()


def test_a_failed_bank_check_charges_nothing_and_offers_the_card_form_again(stripe_gateway, owing):
    url, asked = pay_until_the_bank_asks(owing)
    html = asked.content.decode()
    pi = bank_check(stripe_gateway, html, success=False)
    page = Client().post(url, hidden_fields(html))
    text = page.content.decode()
    assert page.status_code == 200 and "did not confirm the payment with their bank" in text
    assert "data-stripe-card" in text and not Payment.objects.exists()
    assert CardAttempt.objects.get().status == "failed"
    assert (
        stripe_client().v1.payment_intents.retrieve(pi).status == "canceled"
    )  # it can never be paid now
    deliver(
        event(
            "payment_intent.payment_failed",
            stripe_client().v1.payment_intents.retrieve(pi).to_dict(),
        )
    )
    assert not Payment.objects.exists()


def test_a_page_the_patient_never_comes_back_to_is_recorded_by_the_webhook(stripe_gateway, owing):
    _, asked = pay_until_the_bank_asks(owing)
    pi = bank_check(stripe_gateway, asked.content.decode())
    evt = event(
        "payment_intent.succeeded", stripe_client().v1.payment_intents.retrieve(pi).to_dict()
    )
    deliver(evt)
    deliver(evt)
    call_command("payments_reconcile", "--older-than-minutes=0", stdout=open("/dev/null", "w"))
    assert (
        Payment.objects.get().gateway_charge_id == pi
        and CardAttempt.objects.get().status == "succeeded"
    )
    assert_ledger_ok()


def test_reconciliation_waits_for_the_bank_check_then_gives_up_and_cancels(stripe_gateway, owing):
    _, asked = pay_until_the_bank_asks(owing)
    attempt = CardAttempt.objects.get()
    counts = card_attempts.attempts_reconcile(
        older_than=card_attempts.RECONCILE_AFTER,
        now=clock.now() + card_attempts.RECONCILE_AFTER * 2,
    )
    assert counts["pending"] == 1
    attempt.refresh_from_db()
    assert attempt.status == "pending"
    assert (
        stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).status == "requires_action"
    )
    later = clock.now() + card_attempts.AUTHENTICATION_WINDOW + card_attempts.RECONCILE_AFTER
    assert card_attempts.attempts_reconcile(now=later)["failed"] == 1
    attempt.refresh_from_db()
    assert attempt.status == "failed" and not Payment.objects.exists()
    assert stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).status == "canceled"
    # The patient comes back after all: the bank's window can no longer charge anything.
    html = asked.content.decode()
    with pytest.raises(urllib.error.HTTPError):
        bank_check(stripe_gateway, html)
    assert not Payment.objects.exists()


def test_a_card_that_needs_no_check_is_charged_at_once(stripe_gateway, owing):
    url = f"/portal/pay/{pay_link_token(owing)}/"
    html = Client().get(url).content.decode()
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    paid = Client().post(
        url,
        {
            "form_key": key,
            "holder": "Pat",
            "setup_intent": card_typed_in_stripe_js(html, "4242424242424242"),
        },
    )
    assert paid.status_code == 302 and Payment.objects.count() == 1


@pytest.fixture
def portal_client(owing, front_desk):
    patient_portal_enable(actor=front_desk.user, patient=owing, password=PASSWORD)
    owing.refresh_from_db()
    client = Client()
    client.force_login(owing.user)
    return client


def _through_the_bank(client, base, url, form):
    """Post the card page's form with a card whose bank asks, complete the check, post again."""
    html = client.get(url).content.decode()
    form = {
        **form,
        "form_key": re.search(r'name="form_key" value="([^"]+)"', html).group(1),
        "holder": "Pat Test",
        "setup_intent": card_typed_in_stripe_js(html, ALWAYS_AUTHENTICATE),
    }
    asked = client.post(url, form).content.decode()
    assert (
        "Confirm the payment with your bank" in asked and "My Account" in asked
    )  # the portal's own menu
    assert not Payment.objects.exists() and CardAttempt.objects.get().status == "pending"
    bank_check(base, asked)
    return client.post(url, hidden_fields(asked))


def test_a_package_bought_in_the_portal_after_the_bank_check_is_sold_once(
    stripe_gateway, portal_client, catalog
):
    clinic_set(online_sales_enabled=True)
    template = package_template(catalog, name="5 online", price=40000, quantity=5, sold_online=True)
    done = _through_the_bank(
        portal_client, stripe_gateway, f"/portal/passes/buy/{template.pk}/", {}
    )
    assert done.status_code == 302
    sold = Pass.objects.get(template=template)
    assert (
        sold.remaining == 5
        and Payment.objects.get().gateway_charge_id == CardAttempt.objects.get().gateway_id
    )
    assert_ledger_ok()


def test_a_gift_card_bought_in_the_portal_after_the_bank_check_is_loaded_once(
    stripe_gateway, portal_client
):
    clinic_set(gift_cards_enabled=True, gift_card_online_sales_enabled=True)
    done = _through_the_bank(
        portal_client,
        stripe_gateway,
        "/portal/gift-cards/buy/",
        {"amount": "50.00", "recipient_name": "Friend", "recipient_email": "friend@example.test"},
    )
    assert done.status_code == 200 and GiftCard.objects.get().balance_minor == 5000
    assert Payment.objects.count() == 1
    assert_ledger_ok()


def test_a_membership_signed_up_online_confirms_its_first_cycle_with_the_bank_once(
    stripe_gateway, portal_client, catalog
):
    clinic_set(online_sales_enabled=True)
    template = membership_template(catalog, name="Online monthly", sold_online=True)
    done = _through_the_bank(
        portal_client, stripe_gateway, f"/portal/memberships/sign-up/{template.pk}/", {}
    )
    assert done.status_code == 302
    sold = Pass.objects.get(template=template)
    assert (
        sold.card == CardOnFile.objects.get()
        and Pass.objects.filter(template=template).count() == 1
    )
    payment = Payment.objects.get(gateway_charge_id__startswith="pi_")
    assert payment.gateway_charge_id == CardAttempt.objects.get().gateway_id
    assert sold.pass_invoices.get().invoice.balance_minor == 0
    assert_ledger_ok()


def test_a_membership_whose_first_cycle_fails_the_bank_check_stays_unpaid(
    stripe_gateway, portal_client, catalog
):
    clinic_set(online_sales_enabled=True)
    template = membership_template(catalog, name="Online monthly", sold_online=True)
    url = f"/portal/memberships/sign-up/{template.pk}/"
    html = portal_client.get(url).content.decode()
    form = {
        "form_key": re.search(r'name="form_key" value="([^"]+)"', html).group(1),
        "holder": "Pat Test",
        "setup_intent": card_typed_in_stripe_js(html, ALWAYS_AUTHENTICATE),
    }
    asked = portal_client.post(url, form).content.decode()
    assert "Confirm the payment with your bank" in asked
    bank_check(stripe_gateway, asked, success=False)
    done = portal_client.post(url, hidden_fields(asked))
    assert (
        done.status_code == 302
        and not Payment.objects.filter(gateway_charge_id__startswith="pi_").exists()
    )
    sold = Pass.objects.get(template=template)
    assert (
        sold.pass_invoices.get().invoice.balance_minor > 0
        and CardAttempt.objects.get().status == "failed"
    )
