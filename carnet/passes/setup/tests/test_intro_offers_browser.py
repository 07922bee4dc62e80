"""In Chromium at a phone's, a tablet's and a laptop's size: the intro-offer override box on
Billing → New purchase, which only Administrative/All Billing see, fits and passes axe-core."""

import pytest
from playwright.sync_api import expect

from carnet.conftest import fits_and_accessible, log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.tests.factories import package_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [(390, 844), (820, 1180), (1366, 900)]


def test_the_checkouts_override_box_fits_and_passes_axe(page):
    catalog = make_catalog()
    package_template(catalog, name="Intro 3 for 99", price=9900, quantity=3, new_patients_only=True)
    admin = make_staff(AccessLevel.ADMIN_BILLING, name="Ada Admin")
    patient = make_patient(first_name="Rosa", last_name="Page")
    log_in(page, admin.user)
    for w, h in SIZES:
        page.set_viewport_size({"width": w, "height": h})
        page.goto(f"/patients/{patient.pk}/billing/purchase/")
        expect(page.get_by_label("Sell even if it is an intro offer")).to_be_visible()
        fits_and_accessible(page)
