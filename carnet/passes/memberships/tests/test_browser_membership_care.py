"""In a real browser at a phone's, a tablet's and a laptop's size: the staff pages issue 22 added or
changed (a past-due membership's page, Change plan, tomorrow's automatic charges, the Past due
report, the patient's profile with its alert) need no sideways scrolling and pass axe-core."""

import datetime as dt

import pytest
from playwright.sync_api import expect

from carnet.clinic.selectors import clinic_get
from carnet.conftest import fits_and_accessible, log_in, make_catalog, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as memberships
from carnet.passes.tests.factories import membership_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [(390, 844), (820, 1180), (1366, 900)]


def test_membership_care_pages_fit_and_pass_axe(page):
    catalog = make_catalog()
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Olive Owner")
    membership_template(catalog, name="Yoga monthly with a much longer name than usual", price=9000)
    patient = make_patient(first_name="Rosa", last_name="Pastdue")

    today = clock.today(clinic_get().time_zone)
    sold = memberships.membership_sell(
        actor=owner.user,
        patient=patient,
        template=membership_template(catalog, name="Wellness monthly"),
        start_date=today - dt.timedelta(days=40),
    )
    passes_daily(today=today)  # the unpaid cycles are past due now
    log_in(page, owner.user)
    urls = [
        f"/memberships/{sold.pk}/",
        f"/memberships/{sold.pk}/plan/",
        "/memberships/charges/tomorrow/",
        "/reports/past-due/",
        f"/patients/{patient.pk}/",
    ]
    for url in urls:
        for w, h in SIZES:
            page.set_viewport_size({"width": w, "height": h})
            page.goto(url)
            expect(page.locator("main h1")).to_be_visible()
            fits_and_accessible(page)
    page.goto(f"/memberships/{sold.pk}/")
    expect(page.locator("main")).to_contain_text("Past due")
