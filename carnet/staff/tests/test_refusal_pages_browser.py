"""In a real browser at a phone's, a tablet's and a laptop's size: the pages whose menus and
refusals changed for issue 20 point 7 (the No Access page, a refusal naming who to ask, the
Reports index as the front desk sees it) need no sideways scrolling and pass axe-core."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from carnet.conftest import fits_and_accessible, log_in, make_catalog, make_staff
from carnet.core.permissions import AccessLevel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [(390, 844), (820, 1180), (1366, 900)]


def _each_size(page, url, first_words):
    for w, h in SIZES:
        page.set_viewport_size({"width": w, "height": h})
        page.goto(url)
        expect(page.locator("main")).to_contain_text(first_words)
        fits_and_accessible(page)


def test_no_access_refusal_and_reports_pages_fit_and_pass_axe(page):
    make_catalog()
    make_staff(AccessLevel.FULL_ACCESS, name="Olive Owner")
    nobody = make_staff(AccessLevel.NO_ACCESS, name="Nora New")
    log_in(page, nobody.user)
    page.wait_for_load_state("load")
    _each_size(page, reverse("staff:dashboard"), "Ask Olive Owner")
    expect(page.locator("main").get_by_role("button", name="Log out")).to_be_visible()

    page.context.clear_cookies()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    log_in(page, desk.user)
    page.wait_for_load_state("load")
    _each_size(page, reverse("staff:activity"), "Olive Owner")
    _each_size(page, reverse("reports:index"), "Pass sales")
    expect(page.locator("main")).not_to_contain_text("Deferred revenue")
