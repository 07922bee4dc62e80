"""In a real browser: Front Desk sells a product, takes part cash and the rest by test card,
and downloads the receipt PDF."""

import io

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from carnet.billing.models import Invoice
from carnet.billing.tests.factories import product
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sell_a_product_pay_cash_and_card_and_download_the_receipt(page):
    catalog = make_catalog()
    pillow = product(
        catalog["income_category"], price=8000, stock=5, taxes=[catalog["tax"]]
    )  # 80.00 + 13 %
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    log_in(page, desk.user)

    page.goto(f"/patients/{patient.pk}/")
    page.get_by_role("link", name="Billing").click()
    page.get_by_role("link", name="New purchase").click()
    # One checkout: the product and part of the payment in cash (40.00 of the 90.40).
    page.get_by_label("Product 1").select_option(str(pillow.pk))
    page.get_by_label("Payment", exact=True).select_option("cash")
    page.get_by_label("Amount received").fill("40.00")
    page.get_by_role("button", name="Sell").click()
    expect(page.get_by_text("$90.40 in all; $50.40 still owing.")).to_be_visible()
    invoice = Invoice.objects.get()
    expect(page.get_by_test_id("owing")).to_have_text("$50.40")

    # The rest by test card, stored on file first.
    page.get_by_role("link", name="Add a card").click()
    page.get_by_label("Name on card").fill("Marguerite Okafor")
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2099")
    page.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_text("Visa •••• 4242 saved.")).to_be_visible()
    page.get_by_role("link", name="Receive payment").click()
    page.get_by_label("Method").select_option("card_gateway")
    page.get_by_label("Amount received").fill("50.40")
    page.get_by_label("Card on file").select_option(index=1)
    page.get_by_role("button", name="Record payment").click()
    expect(page.get_by_test_id("owing")).to_have_text("$0.00")
    expect(page.get_by_role("cell", name="Paid", exact=True)).to_be_visible()

    with page.expect_download() as download:
        page.get_by_role("link", name="PDF").first.click()

    text = "".join(
        p.extract_text()
        for p in PdfReader(io.BytesIO(open(download.value.path(), "rb").read())).pages
    )
    assert str(invoice.number) in text and "90.40" in text
