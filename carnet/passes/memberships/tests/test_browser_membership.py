"""In a real browser: Front Desk puts a card on file for a patient, sells an automatic monthly
membership from the Billing tab, and sees the first cycle's invoice charged and paid on the
membership's page."""

import pytest
from playwright.sync_api import expect

from carnet.billing.models import Invoice
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.models import Pass
from carnet.passes.tests.factories import membership_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_front_desk_sells_an_automatic_membership_and_the_first_cycle_is_charged(page):
    catalog = make_catalog()
    template = membership_template(catalog, name="Wellness monthly", price=6000, uses=2)
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    log_in(page, desk.user)

    # A card on file first, from the Billing tab.
    page.goto(f"/patients/{patient.pk}/")
    page.get_by_role("link", name="Billing").click()
    page.get_by_role("link", name="Add a card").click()
    page.get_by_label("Name on card").fill("Marguerite Okafor")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2099")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_text("Visa •••• 4242 saved.")).to_be_visible()

    # Sell the membership, paid automatically by that card.
    page.get_by_role("link", name="Packages & Memberships").click()
    page.get_by_role("link", name="Sell a membership").click()
    page.locator("#id_template").select_option(str(template.pk))
    page.get_by_label("Automatic (charge a card on file each cycle)").check()
    page.get_by_label("Card on file", exact=True).select_option(index=1)
    page.get_by_role("button", name="Sell membership").click()

    expect(page.get_by_text("The current cycle was charged to Visa •••• 4242")).to_be_visible()
    sold = Pass.objects.get(patient=patient)
    invoice = Invoice.objects.get(pass_invoice__sold_pass=sold)
    assert invoice.balance_minor == 0
    expect(page.get_by_test_id("status")).to_contain_text("Active")
    expect(page.get_by_test_id("payment")).to_have_text("Automatic — Visa •••• 4242 (exp. 12/2099)")
    expect(page.get_by_test_id("uses")).to_have_text("0 used of 2")
    expect(page.get_by_test_id("collected")).to_have_text("$60.00")
    cycle = page.get_by_test_id("cycle-1")
    expect(cycle.get_by_test_id("invoice-status")).to_have_text("Paid")
    expect(cycle.get_by_role("link", name=f"#{invoice.number}")).to_be_visible()
