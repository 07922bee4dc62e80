"""In a real browser at a phone's, a tablet's and a laptop's size: the pages added this session for
staff (two-factor, sessions, the checkout) need no sideways scrolling and pass axe-core."""

import pytest
from playwright.sync_api import expect

from carnet.conftest import fits_and_accessible, log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [(390, 844), (820, 1180), (1366, 900)]


def test_two_factor_sessions_and_checkout_pages_fit_and_pass_axe(page):
    make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient(first_name="Rosa", last_name="Page")
    log_in(page, desk.user)
    for url in [
        "/account/two-factor/",
        "/account/sessions/",
        f"/patients/{patient.pk}/billing/purchase/",
    ]:
        for w, h in SIZES:
            page.set_viewport_size({"width": w, "height": h})
            page.goto(url)
            expect(page.locator("main h1")).to_be_visible()
            fits_and_accessible(page)
