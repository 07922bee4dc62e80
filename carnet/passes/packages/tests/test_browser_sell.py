"""In a real browser: Front Desk opens a patient's Billing → Packages & Memberships, sells a
package taking cash, and sees it listed as paid with 0 / 10 used and 10 remaining."""

import pytest
from playwright.sync_api import expect

from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.models import Pass
from carnet.passes.selectors import pass_unlocked
from carnet.passes.tests.factories import package_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_front_desk_sells_a_package_for_cash(page):
    catalog = make_catalog()
    template = package_template(catalog, name="10 massages", price=90000, quantity=10)
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    log_in(page, desk.user)

    page.goto(f"/patients/{patient.pk}/")
    page.get_by_role("link", name="Billing").click()
    page.get_by_role("link", name="Packages & Memberships").click()
    expect(page.get_by_text("No packages or memberships yet.")).to_be_visible()
    page.get_by_role("link", name="Sell a package").click()
    page.locator("#id_template").select_option(str(template.pk))
    page.get_by_label("Take payment now").check()
    page.get_by_label("Method").select_option("cash")
    page.get_by_role("button", name="Sell package").click()
    expect(
        page.get_by_text("Sold 10 massages to Marguerite Okafor for $900.00 — paid.")
    ).to_be_visible()

    sold = Pass.objects.get(patient=patient)
    assert pass_unlocked(sold) == 10
    page.get_by_role("link", name="Packages & Memberships").first.click()
    row = page.get_by_test_id(f"pass-{sold.pk}")
    expect(row.get_by_test_id("usage")).to_have_text("0 / 10")
    expect(row.get_by_test_id("remaining")).to_have_text("10")
    expect(row.get_by_test_id("paid")).to_have_text("Paid")
    expect(row.get_by_test_id("status")).to_have_text("Active")
