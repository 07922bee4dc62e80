"""In a real browser at a phone's, a tablet's and a desk's width, with axe: the staff page of a sold
value package (issue 23 point 3) shows the money left, the patient's own Packages page shows the
value left, and both fit the screen with nothing axe objects to."""

import pytest
from playwright.sync_api import expect

from carnet.conftest import (
    PASSWORD,
    fits_and_accessible,
    log_in,
    make_catalog,
    make_patient,
    make_staff,
)
from carnet.core.permissions import AccessLevel
from carnet.passes.tests.factories import package_template, sold_package, visit_tomorrow_arrived
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [(390, 844), (820, 1180), (1366, 900)]


@pytest.fixture
def drawn_once():
    """A paid value package (900.00 for 1,000.00 of treatments) with one 90.00 visit drawn."""
    catalog = make_catalog()
    clinic_set(time_zone="America/Toronto")
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Olga Owner")
    desk = make_staff(name="Dana Desk")
    me = make_patient(first_name="Nora", last_name="Buyer", email="nora@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    template = package_template(
        catalog, name="Wellness bank", price=90000, quantity=None, face_value_minor=100000
    )
    sold = sold_package(desk, me, template)
    visit_tomorrow_arrived(desk, catalog, me)
    sold.refresh_from_db()
    assert (sold.value_posted_minor, sold.value_left) == (9000, 91000)
    return {"desk": desk, "me": me, "sold": sold}


@pytest.mark.parametrize("width,height", SIZES)
def test_the_staff_pass_page_shows_the_money_left(page, drawn_once, width, height):
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, drawn_once["desk"].user)
    page.goto(f"/passes/{drawn_once['sold'].pk}/")
    expect(page.get_by_test_id("remaining")).to_have_text("$910.00")
    expect(page.get_by_test_id("usage")).to_have_text("$90.00 drawn of $1,000.00")
    expect(page.get_by_text("$1,000.00 held: $90.00 drawn by 1 visit")).to_be_visible()
    fits_and_accessible(page)

    page.goto(f"/patients/{drawn_once['me'].pk}/passes/")
    row = page.get_by_role("row").filter(has_text="Wellness bank")
    expect(row.get_by_test_id("remaining")).to_have_text("$910.00")
    fits_and_accessible(page)


@pytest.mark.parametrize("width,height", SIZES)
def test_the_portal_packages_page_shows_the_value_left(page, drawn_once, width, height):
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, drawn_once["me"].user, path="/portal/login/")
    page.goto("/portal/passes/")
    row = page.get_by_test_id(f"pass-{drawn_once['sold'].pk}")
    expect(row).to_contain_text("Wellness bank")
    expect(row.get_by_test_id("pass-usage")).to_have_text("$90.00 of $1,000.00 used")
    expect(row.get_by_test_id("pass-remaining")).to_have_text("$910.00")
    expect(row.get_by_test_id("pass-remaining")).to_be_visible()
    fits_and_accessible(page)
