"""Every page that takes a card, staff's and the portal's: with Stripe on it loads Stripe.js and its
Content-Security-Policy is Carnet's own plus exactly Stripe's script, frame and API origins, with
no card field of Carnet's; with the test gateway it keeps Carnet's own policy and its own form, and
says it is for demonstrations and tests. Every other page keeps Carnet's own policy."""

import pytest
from django.test import Client

from carnet.billing.emails import pay_link_token
from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import PASSWORD, make_patient
from carnet.core.middleware import CSP
from carnet.gateway.services import stripe_csp
from carnet.passes.tests.factories import membership_template, package_template
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

CARD_PAGES = [
    ("staff", "/patients/{patient}/billing/cards/new/"),  # add a card on file
    ("staff", "/patients/{patient}/billing/purchase/"),  # the checkout's New card
    ("staff", "/patients/{patient}/billing/payment/"),  # Receive payment's New card
    ("anyone", "/portal/pay/{token}/"),  # the Pay Balance link
    ("patient", "/portal/passes/buy/{package}/"),
    ("patient", "/portal/memberships/sign-up/{membership}/"),
    ("patient", "/portal/gift-cards/buy/"),
]
OTHER_PAGES = [
    ("staff", "/"),
    ("staff", "/patients/"),
    ("staff", "/patients/{patient}/billing/"),
    ("staff", "/patients/{patient}/"),
    ("patient", "/portal/"),
]


@pytest.fixture
def clinic(db, catalog, admin_staff):
    clinic_set(
        online_sales_enabled=True, gift_cards_enabled=True, gift_card_online_sales_enabled=True
    )
    patient = make_patient(email="pat@example.test")
    manual_invoice(admin_staff, patient, 8000, category=catalog["income_category"])
    patient_portal_enable(actor=admin_staff.user, patient=patient, password=PASSWORD)
    patient.refresh_from_db()
    names = {
        "patient": patient.pk,
        "token": pay_link_token(patient),
        "package": package_template(catalog, price=40000, quantity=5, sold_online=True).pk,
        "membership": membership_template(catalog, sold_online=True).pk,
    }
    clients = {"anyone": Client(), "staff": Client(), "patient": Client()}
    clients["staff"].force_login(admin_staff.user)
    clients["patient"].force_login(patient.user)
    return lambda who, path: clients[who].get(path.format(**names))


@pytest.mark.parametrize("who, path", CARD_PAGES)
def test_with_stripe_a_card_page_admits_exactly_stripes_origins_and_has_no_card_field(
    stripe_gateway, clinic, who, path
):
    page = clinic(who, path)
    html = page.content.decode()
    assert page.status_code == 200, html[:2000]
    assert page["Content-Security-Policy"] == stripe_csp()
    assert f'src="{stripe_gateway}/js.stripe.com/v3/"' in html and "data-stripe-mount" in html
    assert not any(f'name="{field}"' in html for field in ("number", "cvc", "exp_month"))


@pytest.mark.parametrize("who, path", CARD_PAGES)
def test_with_the_test_gateway_a_card_page_keeps_its_form_and_says_it_is_for_demos(
    clinic, who, path
):
    page = clinic(who, path)
    html = " ".join(page.content.decode().split())  # as it reads, whatever the line breaks
    assert page.status_code == 200 and page["Content-Security-Policy"] == CSP
    assert 'name="number"' in html and "for demonstrations and tests" in html
    assert "js.stripe.com" not in html


@pytest.mark.parametrize("who, path", OTHER_PAGES)
def test_with_stripe_other_pages_keep_carnets_own_policy(stripe_gateway, clinic, who, path):
    page = clinic(who, path)
    assert page.status_code == 200 and page["Content-Security-Policy"] == CSP
    assert "js.stripe.com" not in page.content.decode()
