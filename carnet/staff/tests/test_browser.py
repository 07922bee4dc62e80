"""In a real browser: Front Desk finds a patient; Admin creates a treatment; Front Desk may not."""

import pytest
from playwright.sync_api import expect

from carnet.clinic.models import Treatment
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_front_desk_finds_a_patient_and_opens_the_profile(page):
    make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    make_patient(
        first_name="Marguerite",
        last_name="Okafor",
        email="m.okafor@example.test",
        phone="416-555-0199",
    )
    make_patient(first_name="Leon", last_name="Brandt")
    log_in(page, desk.user)
    expect(page.get_by_text("Hello Dana Desk")).to_be_visible()

    page.get_by_role("link", name="Patients").click()
    page.get_by_placeholder("Name, email or phone").fill("0199")  # live search by phone, no submit
    rows = page.locator("#patient-rows tr")
    expect(rows).to_have_count(1)
    rows.get_by_role("link", name="Marguerite Okafor").click()
    expect(page.get_by_role("heading", name="Marguerite Okafor")).to_be_visible()
    expect(page.get_by_text("m.okafor@example.test")).to_be_visible()


def test_admin_creates_a_treatment_and_front_desk_is_not_allowed(page, browser, live_server):
    catalog = make_catalog()
    admin = make_staff(AccessLevel.ADMIN_BILLING, name="Ada Admin")
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")

    log_in(page, admin.user)
    page.goto("/settings/treatments/")
    page.get_by_role("link", name="New treatment").click()
    page.get_by_label("Name").fill("Hot stone massage")
    page.get_by_label("Discipline").select_option(str(catalog["discipline"].pk))
    page.get_by_label("Kind").select_option("individual")
    page.get_by_label("Duration minutes").fill("75")
    page.get_by_label("Price").fill("abc")
    page.get_by_label("Income category").select_option(str(catalog["income_category"].pk))
    page.get_by_role("button", name="Save").click()
    expect(
        page.get_by_text("Enter an amount like 85.00")
    ).to_be_visible()  # inline error, nothing lost
    expect(page.get_by_label("Name")).to_have_value("Hot stone massage")
    page.get_by_label("Price").fill("120.50")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved treatment “Hot stone massage”")).to_be_visible()
    expect(page.get_by_role("cell", name="$120.50")).to_be_visible()
    assert Treatment.objects.get(name="Hot stone massage").price_minor == 12050

    other = browser.new_context(base_url=live_server.url)
    desk_page = other.new_page()
    log_in(desk_page, desk.user)
    desk_page.goto("/settings/treatments/")
    expect(desk_page.get_by_role("link", name="New treatment")).to_have_count(0)
    response = desk_page.goto("/settings/treatments/new/")
    assert response.status == 403
    expect(desk_page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(desk_page.get_by_text("It needs Administrative/All Billing or higher")).to_be_visible()
    other.close()
