"""The Pay Balance page with Stripe on (against localstripe): Stripe.js takes the card, Carnet gets
a SetupIntent id made for this patient's balance and nothing else; Stripe's origins are admitted
by this page's CSP only; the test gateway's page says it is for demonstrations and tests."""

import re

import pytest
from django.test import Client

from carnet.billing.emails import pay_link_token
from carnet.billing.models import Payment
from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import CardOnFile, GatewayCustomer
from carnet.gateway.services import card_entry_begin
from carnet.gateway.tests.test_stripe import browser_payment_method, stripe_client
from carnet.giftcards.models import GiftCard
from carnet.passes.models import Pass
from carnet.passes.tests.factories import membership_template, package_template
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set


@pytest.fixture
def owing(db, catalog):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient(email="pat@example.test")
    manual_invoice(staff, patient, 8000, category=catalog["income_category"])
    return patient


def _page(patient):
    response = Client().get(f"/portal/pay/{pay_link_token(patient)}/")
    html = response.content.decode()
    return response, html, re.search(r'name="form_key" value="([^"]+)"', html).group(1)


def _confirm_in_browser(client_secret, setup_intent, number="4242424242424242"):
    """What Stripe.js does with the card typed into Stripe's field."""
    stripe_client().v1.setup_intents.confirm(
        setup_intent,
        params={"client_secret": client_secret, "payment_method": browser_payment_method(number)},
    )


def test_the_page_loads_stripe_js_and_pays_with_the_setup_intent_it_made(stripe_gateway, owing):
    response, html, key = _page(owing)
    assert 'name="number"' not in html and 'name="cvc"' not in html  # no card field of Carnet's own
    assert f'src="{stripe_gateway}/js.stripe.com/v3/"' in html
    assert f"script-src 'self' {stripe_gateway};" in response["Content-Security-Policy"]
    setup = re.search(r'data-client-secret="((seti_\w+)_secret_\w+)"', html)
    _confirm_in_browser(setup.group(1), setup.group(2))
    paid = Client().post(
        f"/portal/pay/{pay_link_token(owing)}/",
        {"form_key": key, "holder": "Pat Test", "setup_intent": setup.group(2)},
    )
    assert paid.status_code == 302 and "/paid/" in paid["Location"]
    payment = Payment.objects.get()
    assert payment.amount_minor == 8000 and payment.gateway_charge_id.startswith("pi_")


def test_a_setup_intent_made_for_another_payment_is_refused(stripe_gateway, owing):
    other = make_patient()
    setup = card_entry_begin(entry_for=f"pay-balance:{other.pk}")
    _confirm_in_browser(setup["client_secret"], setup["setup_intent"])
    _, _, key = _page(owing)
    response = Client().post(
        f"/portal/pay/{pay_link_token(owing)}/",
        {"form_key": key, "holder": "Pat Test", "setup_intent": setup["setup_intent"]},
    )
    assert response.status_code == 200 and not Payment.objects.exists()
    assert "No such card set-up" in response.content.decode()


def test_a_declined_card_says_so_and_the_page_offers_a_fresh_card_form(stripe_gateway, owing):
    _, html, key = _page(owing)
    setup = re.search(r'data-client-secret="((seti_\w+)_secret_\w+)"', html)
    _confirm_in_browser(setup.group(1), setup.group(2), number="4000000000000341")
    response = Client().post(
        f"/portal/pay/{pay_link_token(owing)}/",
        {"form_key": key, "holder": "Pat Test", "setup_intent": setup.group(2)},
    )
    html = response.content.decode()
    assert response.status_code == 200 and "declined" in html and not Payment.objects.exists()
    assert 'name="setup_intent" value=""' in html and setup.group(2) not in html


def test_stripe_origins_are_admitted_on_card_pages_only(stripe_gateway, owing, admin_staff):
    client = Client()
    client.force_login(admin_staff.user)
    for path in ["/patients/", "/", f"/patients/{owing.pk}/billing/"]:
        assert stripe_gateway not in client.get(path).get("Content-Security-Policy", "")


def test_the_test_gateway_page_keeps_its_own_form_and_says_it_is_for_demos(owing):
    _, html, _ = _page(owing)
    assert (
        'name="number"' in html
        and "for demonstrations and tests" in html
        and "js.stripe.com" not in html
    )


def test_staff_add_a_card_with_stripe_js_and_carnet_keeps_only_its_ids(
    stripe_gateway, owing, admin_staff
):
    client = Client()
    client.force_login(admin_staff.user)
    url = f"/patients/{owing.pk}/billing/cards/new/"
    page = client.get(url)
    html = page.content.decode()
    assert (
        'name="number"' not in html
        and f"frame-src {stripe_gateway};" in page["Content-Security-Policy"]
    )
    setup = re.search(r'data-client-secret="((seti_\w+)_secret_\w+)"', html)
    _confirm_in_browser(setup.group(1), setup.group(2))
    saved = client.post(url, {"holder": "Pat Test", "setup_intent": setup.group(2)})
    assert saved.status_code == 302
    card = CardOnFile.objects.get(patient=owing)
    assert card.token.startswith("pm_") and card.last4 == "4242" and card.holder == "Pat Test"
    unconfirmed = re.search(
        r'data-client-secret="((seti_\w+)_secret_\w+)"', client.get(url).content.decode()
    )
    refused = client.post(url, {"holder": "Pat Test", "setup_intent": unconfirmed.group(2)})
    assert refused.status_code == 200 and "was not saved" in refused.content.decode()


def test_a_patient_buys_a_package_with_stripe_js(stripe_gateway, owing, catalog, front_desk):
    clinic_set(online_sales_enabled=True)
    patient_portal_enable(actor=front_desk.user, patient=owing, password=PASSWORD)
    owing.refresh_from_db()
    template = package_template(catalog, name="5 online", price=40000, quantity=5, sold_online=True)
    client = Client()
    client.force_login(owing.user)
    url = f"/portal/passes/buy/{template.pk}/"
    page = client.get(url)
    html = page.content.decode()
    assert 'name="number"' not in html and "js.stripe.com/v3/" in html
    assert f"connect-src 'self' {stripe_gateway};" in page["Content-Security-Policy"]
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    setup = re.search(r'data-client-secret="((seti_\w+)_secret_\w+)"', html)
    _confirm_in_browser(setup.group(1), setup.group(2))
    bought = client.post(
        url, {"form_key": key, "holder": "Pat Test", "setup_intent": setup.group(2)}
    )
    assert bought.status_code == 302
    sold = Pass.objects.get(patient=owing, template=template)
    assert (
        Payment.objects.get(gateway_charge_id__startswith="pi_").amount_minor > 0
        and sold.remaining == 5
    )


def test_a_patient_buys_a_gift_card_with_stripe_js(stripe_gateway, owing, front_desk):
    clinic_set(gift_cards_enabled=True, gift_card_online_sales_enabled=True)
    patient_portal_enable(actor=front_desk.user, patient=owing, password=PASSWORD)
    owing.refresh_from_db()
    client = Client()
    client.force_login(owing.user)
    html = client.get("/portal/gift-cards/buy/").content.decode()
    assert 'name="number"' not in html and 'name="amount"' in html
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    setup = re.search(r'data-client-secret="((seti_\w+)_secret_\w+)"', html)
    _confirm_in_browser(setup.group(1), setup.group(2))
    bought = client.post(
        "/portal/gift-cards/buy/",
        {
            "form_key": key,
            "holder": "Pat Test",
            "setup_intent": setup.group(2),
            "amount": "50.00",
            "recipient_name": "Friend",
            "recipient_email": "friend@example.test",
        },
    )
    assert bought.status_code == 200 and GiftCard.objects.get().balance_minor == 5000


def test_a_patient_signs_up_for_a_membership_with_stripe_js_and_the_card_stays_for_autopay(
    stripe_gateway, owing, catalog, front_desk
):
    clinic_set(online_sales_enabled=True)
    patient_portal_enable(actor=front_desk.user, patient=owing, password=PASSWORD)
    owing.refresh_from_db()
    template = membership_template(catalog, name="Online monthly", sold_online=True)
    client = Client()
    client.force_login(owing.user)
    url = f"/portal/memberships/sign-up/{template.pk}/"
    html = client.get(url).content.decode()
    assert 'name="number"' not in html
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    setup = re.search(r'data-client-secret="((seti_\w+)_secret_\w+)"', html)
    _confirm_in_browser(setup.group(1), setup.group(2))
    assert (
        client.post(
            url, {"form_key": key, "holder": "Pat Test", "setup_intent": setup.group(2)}
        ).status_code
        == 302
    )
    sold = Pass.objects.get(patient=owing, template=template)
    card = CardOnFile.objects.get(patient=owing)
    assert sold.card == card and card.token.startswith("pm_")
    customer = GatewayCustomer.objects.get(patient=owing).customer_id
    assert (
        stripe_client().v1.payment_methods.retrieve(card.token).customer == customer
    )  # chargeable off-session
    assert Payment.objects.filter(
        patient=owing, gateway_charge_id__startswith="pi_"
    ).exists()  # the first cycle
