"""Real threads racing through the checkout (issue 20 point 1): the same form sent twice at once
sells its package, membership and gift card once and charges the new card once; two checkouts
choosing the same gift card code make one card, the other is refused cleanly."""

import pytest
from django.test import Client
from django.urls import reverse

from carnet.billing.models import CardAttempt, Invoice, Payment
from carnet.billing.tests.factories import product
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core.permissions import AccessLevel
from carnet.giftcards.models import GiftCard
from carnet.passes.models import Pass
from carnet.passes.tests.factories import membership_template, package_template

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]
NEW_CARD = {
    "method": "new_card",
    "number": "4242 4242 4242 4242",
    "holder": "Rosalind Achebe",
    "exp_month": 12,
    "exp_year": 2040,
    "cvc": "123",
}


@pytest.fixture
def w():
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK)
    patient = make_patient()
    return {
        "desk": desk,
        "patient": patient,
        "cat": catalog,
        "url": reverse("billing:purchase_new", kwargs={"pk": patient.pk}),
        "package": package_template(catalog, name="5 massages", price=40000, quantity=5),
        "membership": membership_template(catalog, name="Wellness monthly", price=6000),
        "oil": product(catalog["income_category"], price=2500, stock=50),
    }


def _client(w):
    client = Client()
    client.force_login(w["desk"].user)
    return client


def test_the_same_checkout_sent_twice_at_once_sells_and_charges_once(w):
    data = {
        "form_key": "race-1",
        "package_0": w["package"].pk,
        "membership": w["membership"].pk,
        "membership_payment": "automatic",
        "new_gift_card_amount": "25.00",
        **NEW_CARD,
    }
    clients = [_client(w) for _ in range(3)]
    results = race(3, lambda i: clients[i].post(w["url"], data).status_code)
    assert results == [302, 302, 302], results
    assert (
        Pass.objects.count() == 2 and GiftCard.objects.count() == 1 and Invoice.objects.count() == 2
    )
    assert CardAttempt.objects.count() == 1 and Payment.objects.count() == 1
    assert (
        GiftCard.objects.get().balance_minor == 2500 and Payment.objects.get().amount_minor == 48500
    )
    assert_ledger_ok()


def test_two_checkouts_choosing_the_same_gift_card_code_make_one_card(w):
    clients = [_client(w) for _ in range(2)]

    def sell(i):
        response = clients[i].post(
            w["url"],
            {
                "form_key": f"code-{i}",
                "method": "cash",
                "product_0": w["oil"].pk,
                "new_gift_card_amount": "10.00",
                "new_gift_card_code": "SAME-CODE-1",
            },
        )
        return (
            "sold"
            if response.status_code == 302
            else (
                "refused"
                if "already used by another gift card" in response.content.decode()
                else response.status_code
            )
        )

    assert sorted(race(2, sell)) == ["refused", "sold"]
    assert GiftCard.objects.get().balance_minor == 1000
    assert Invoice.objects.count() == 1 and Payment.objects.count() == 1  # the loser sold nothing
    assert_ledger_ok()
