"""In a real browser: the "Card payments to review" page, with a charge the crash left unrecorded
and reconciliation recorded, reads well and passes axe at a phone's,
a tablet's and a laptop's size."""

import pytest
from playwright.sync_api import expect

from carnet.billing.tests.test_card_money_edge import (  # noqa: F401 (fixtures)
    Crash,
    crash_before_recording,
    desk,
    reconcile_now,
    staff_card_payment,
)
from carnet.conftest import fits_and_accessible, log_in, make_patient

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_card_payments_to_review_page_fits_and_passes_axe(page, desk, crash_before_recording):
    patient = make_patient(first_name="Reconciled", last_name="Crash")
    crash_before_recording()
    with pytest.raises(Crash):
        staff_card_payment(desk, patient)
    reconcile_now()
    log_in(page, desk["user"])
    for width, height in [(390, 844), (820, 1180), (1366, 900)]:
        page.set_viewport_size({"width": width, "height": height})
        page.goto("/billing/card-payments/review/")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        expect(page.locator("main")).to_contain_text("Reconciled Crash")
        fits_and_accessible(page)
