"""In a real browser: Front Desk loads a gift card for one patient, and another patient pays part of
an invoice with it and the rest in cash."""

import pytest
from playwright.sync_api import expect

from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.giftcards.models import GiftCard

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_load_a_gift_card_and_pay_an_invoice_with_it(page):
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    buyer = make_patient(first_name="Ada", last_name="Buyer")
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    invoice = manual_invoice(desk, patient, 9000, category=catalog["income_category"])
    log_in(page, desk.user)

    page.get_by_role("link", name="Gift cards").click()
    page.get_by_role("link", name="New gift card").click()
    page.get_by_label("Code").fill("birthday-2026")
    page.get_by_label("Amount to load").fill("60.00")
    page.get_by_label("Purchaser").select_option(str(buyer.pk))
    page.get_by_label("Method").select_option("debit")
    page.get_by_role("button", name="Create gift card").click()
    expect(page.get_by_test_id("gift-card-balance")).to_have_text("$60.00")

    page.goto(f"/patients/{patient.pk}/billing/")
    page.get_by_role("link", name="Receive payment").click()
    page.get_by_label("Method").select_option("gift_card")
    page.get_by_label("Amount received").fill("60.00")
    page.get_by_label("Gift card code").fill("Birthday-2026")
    page.get_by_label(f"Apply to #{invoice.number}").fill("60.00")
    page.get_by_role("button", name="Record payment").click()
    expect(page.get_by_test_id("owing")).to_have_text("$30.00")

    page.get_by_role("link", name="Receive payment").click()
    page.get_by_label("Amount received").fill("30.00")
    page.get_by_role("button", name="Record payment").click()
    expect(page.get_by_test_id("owing")).to_have_text("$0.00")
    assert GiftCard.objects.get().balance_minor == 0

    page.get_by_role("link", name="Gift cards").click()
    page.get_by_label("Search by code").fill("birthday")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="BIRTHDAY-2026").click()
    expect(page.get_by_role("cell", name="Redeem", exact=True)).to_be_visible()
    expect(page.get_by_test_id("gift-card-balance")).to_have_text("$0.00")
