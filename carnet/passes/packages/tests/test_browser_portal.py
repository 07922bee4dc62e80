"""In a real browser: a patient buys a package online with a test card, sees it in Packages &
Memberships unused, then after a covered visit sees its usage go up."""

import pytest
from playwright.sync_api import expect

from carnet.conftest import PASSWORD, log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.passes.models import Pass
from carnet.passes.tests.factories import package_template, visit_tomorrow_arrived
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_patient_buys_a_package_online_and_sees_its_usage(page):
    catalog = make_catalog()
    clinic_set(online_sales_enabled=True, time_zone="America/Toronto")
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Olga Owner")
    me = make_patient(first_name="Nora", last_name="Buyer", email="nora@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    package_template(catalog, name="5 massages", price=40000, quantity=5, sold_online=True)
    package_template(catalog, name="Front desk only", price=10000, quantity=2)

    log_in(page, me.user, path="/portal/login/")
    page.goto("/portal/passes/")
    expect(page.get_by_text("No packages or memberships yet.")).to_be_visible()
    offers = page.locator("#buy-online")
    expect(offers).to_contain_text("5 massages")
    expect(offers).not_to_contain_text("Front desk only")
    page.get_by_role("link", name="Buy 5 massages").click()
    expect(page.get_by_test_id("pass-price")).to_have_text("$400.00")

    page.get_by_label("Name on card").fill("Nora Buyer")
    page.get_by_label("Card number").fill("4000 0000 0000 0002")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2040")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name="Pay and buy").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was charged")
    assert not Pass.objects.exists()

    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name="Pay and buy").click()
    expect(page.get_by_test_id("pass-bought")).to_contain_text("5 massages")
    sold = Pass.objects.get()
    assert sold.patient == me and sold.sold_online and TestGatewayCharge.objects.count() == 1

    page.get_by_role("link", name="Packages & Memberships").click()
    row = page.get_by_test_id(f"pass-{sold.pk}")
    expect(row).to_contain_text("5 massages")
    expect(row.get_by_test_id("pass-usage")).to_have_text("0 / 5 used")
    expect(row.get_by_test_id("pass-remaining")).to_have_text("5")
    expect(row).to_contain_text("Active")

    # The front desk books her a massage (the package is picked automatically) and she arrives.
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    visit_tomorrow_arrived(desk, catalog, me)
    sold.refresh_from_db()
    assert (sold.posted_count, sold.remaining) == (1, 4)

    page.reload()
    row = page.get_by_test_id(f"pass-{sold.pk}")
    expect(row.get_by_test_id("pass-usage")).to_have_text("1 / 5 used")
    expect(row.get_by_test_id("pass-remaining")).to_have_text("4")
