"""A card added through a card update link pays the owed cycles while the patient is at the page
(on-session, against localstripe): a bank that insists on 3-D Secure has the patient confirm on the
page, as Pay Balance does; the charge is recorded once whether the page, Stripe's webhook or
reconciliation comes first; a failed check leaves the cycle owed, as a decline does."""

import datetime as dt
import re

import pytest
from django.core.management import call_command
from django.test import Client

from carnet.billing.models import CardAttempt, Payment
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.billing.tests.test_stripe_webhooks import deliver, event
from carnet.billing.tests.test_three_d_secure import (
    ALWAYS_AUTHENTICATE,
    bank_check,
    card_typed_in_stripe_js,
    hidden_fields,
)
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.gateway.tests.test_stripe import stripe_client
from carnet.passes.memberships import card_requests as cr
from carnet.passes.memberships import services as ms
from carnet.passes.models import CardUpdateRequest
from carnet.passes.tests.factories import membership_template
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
ASKED = "Confirm the payment with your bank"


def _owing_member(front_desk, catalog, *, cycles=1):
    """A manual membership with `cycles` cycles issued and unpaid, and a card update link for it."""
    clinic_set(time_zone="America/Toronto")
    patient = make_patient(email="pat@example.test", first_name="Pat")
    start = clock.today("America/Toronto") - dt.timedelta(days=31 * (cycles - 1))
    sold = ms.membership_sell(
        actor=front_desk.user,
        patient=patient,
        template=membership_template(catalog),
        start_date=start,
    )
    assert len(list(cr.owed_rows(sold))) == cycles
    token = cr.card_update_token(cr.card_update_request(sold_pass=sold, actor=front_desk.user))
    return sold, f"/portal/card/{token}/"


def _add_card_until_the_bank_asks(url, number=ALWAYS_AUTHENTICATE):
    html = Client().get(url).content.decode()
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    asked = Client().post(
        url,
        {
            "form_key": key,
            "holder": "Pat Test",
            "setup_intent": card_typed_in_stripe_js(html, number),
        },
    )
    return asked


@pytest.fixture
def member(stripe_gateway, front_desk, catalog, settings):
    settings.SITE_URL = "https://clinic.example"
    return _owing_member(front_desk, catalog)


def test_the_bank_asks_the_patient_confirms_on_the_page_and_the_cycle_is_paid_once(
    stripe_gateway, member
):
    sold, url = member
    owing = cr.owing_minor(sold)
    asked = _add_card_until_the_bank_asks(url)
    html = asked.content.decode()
    assert asked.status_code == 200 and ASKED in html
    assert f"script-src 'self' {stripe_gateway};" in asked["Content-Security-Policy"]
    attempt = CardAttempt.objects.get()
    assert (
        attempt.status == "pending"
        and attempt.amount_minor == owing
        and not Payment.objects.exists()
    )
    assert (
        stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).status == "requires_action"
    )
    assert (
        CardUpdateRequest.objects.get().card_id is not None
    )  # the card is on the membership already
    fields = hidden_fields(html)
    assert (
        ASKED in Client().post(url, fields).content.decode()
    )  # a double click before the check: still waiting
    assert not Payment.objects.exists() and CardAttempt.objects.count() == 1
    bank_check(stripe_gateway, html)
    done = Client().post(url, fields)
    assert done.status_code == 302 and done["Location"].endswith("/done/")
    payment = Payment.objects.get()
    assert (payment.amount_minor, payment.gateway_charge_id) == (owing, attempt.gateway_id)
    assert cr.owing_minor(sold) == 0
    intent = stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).to_dict()
    deliver(event("payment_intent.succeeded", intent))
    deliver(event("payment_intent.succeeded", intent))
    assert Client().post(url, fields).status_code == 302  # the page posted once more: nothing more
    assert Payment.objects.count() == 1 and CardAttempt.objects.get().status == "succeeded"
    assert "Nothing is owed" in Client().get(done["Location"]).content.decode()
    assert_ledger_ok()


@pytest.mark.parametrize("first", ["webhook", "reconciliation"])
def test_the_webhook_or_reconciliation_comes_first_and_the_page_then_finds_the_cycle_paid(
    stripe_gateway, member, first
):
    sold, url = member
    html = _add_card_until_the_bank_asks(url).content.decode()
    pi = bank_check(stripe_gateway, html)
    if first == "webhook":
        deliver(
            event(
                "payment_intent.succeeded",
                stripe_client().v1.payment_intents.retrieve(pi).to_dict(),
            )
        )
    else:
        call_command("payments_reconcile", "--older-than-minutes=0", stdout=open("/dev/null", "w"))
    assert Payment.objects.get().gateway_charge_id == pi and cr.owing_minor(sold) == 0
    done = Client().post(url, hidden_fields(html))
    assert done.status_code == 302 and Payment.objects.count() == 1
    assert_ledger_ok()


def test_a_failed_bank_check_leaves_the_cycle_owed_as_a_decline_does(stripe_gateway, member):
    sold, url = member
    owing = cr.owing_minor(sold)
    html = _add_card_until_the_bank_asks(url).content.decode()
    pi = bank_check(stripe_gateway, html, success=False)
    done = Client().post(url, hidden_fields(html))
    assert done.status_code == 302 and not Payment.objects.exists()
    assert CardAttempt.objects.get().status == "failed" and cr.owing_minor(sold) == owing
    row = cr.owed_rows(sold).get()
    assert (
        row.charge_attempts == 1 and "did not confirm the payment with their bank" in row.last_error
    )
    page = Client().get(done["Location"]).content.decode()
    assert "is still owed" in page and "did not confirm the payment with their bank" in page
    assert stripe_client().v1.payment_intents.retrieve(pi).status == "canceled"


def test_two_owed_cycles_are_confirmed_one_after_the_other(
    stripe_gateway, front_desk, catalog, settings
):
    settings.SITE_URL = "https://clinic.example"
    sold, url = _owing_member(front_desk, catalog, cycles=2)
    html = _add_card_until_the_bank_asks(url).content.decode()
    assert CardAttempt.objects.count() == 1  # one bank check at a time
    bank_check(stripe_gateway, html)
    second = Client().post(url, hidden_fields(html))
    html2 = second.content.decode()
    assert ASKED in html2 and Payment.objects.count() == 1 and CardAttempt.objects.count() == 2
    bank_check(stripe_gateway, html2)
    done = Client().post(url, hidden_fields(html2))
    assert done.status_code == 302 and Payment.objects.count() == 2 and cr.owing_minor(sold) == 0
    assert_ledger_ok()


def test_a_card_the_bank_does_not_question_pays_at_once(stripe_gateway, member):
    sold, url = member
    done = _add_card_until_the_bank_asks(url, number="4242424242424242")
    assert done.status_code == 302 and Payment.objects.count() == 1 and cr.owing_minor(sold) == 0
