"""In a real browser at a phone's, a tablet's and a desktop's size: every portal page and every
online booking page fits the screen's width (no sideways scrolling: tables become stacked rows) and
passes axe-core's checks with no violation, for a patient with a dependant, appointments, receipts,
a package, a membership and passes on sale."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from carnet.billing import emails
from carnet.clinic.models import Location
from carnet.conftest import (
    PASSWORD,
    fits_and_accessible,
    log_in,
    make_catalog,
    make_patient,
    make_staff,
)
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.passes.models import PassTemplate
from carnet.passes.tests.factories import (
    at,
    membership_template,
    package_template,
    practitioner,
    sold_package,
)
from carnet.people.models import Shift
from carnet.people.services import family_link_add, patient_portal_enable
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [
    (360, 740),
    (390, 844),
    (820, 1180),
    (1366, 900),
]  # the narrowest phone the issue names, too


def _patient_with_history():
    catalog = make_catalog()
    clinic_set(online_sales_enabled=True, phone="555-0100", cancellation_window_hours=24)
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Olga Owner")
    me = make_patient(
        first_name="Nora", last_name="Longname-Householder", email="nora@example.test"
    )
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    kid = make_patient(first_name="Kit", last_name="Longname-Householder")
    family_link_add(actor=owner.user, patient=me, relative=kid, kind="guardian")
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    prac = practitioner(catalog["location"])
    prac.display_name = "Paula Practitioner-Smythe"
    prac.save()
    for weekday in range(7):
        Shift.objects.create(
            staff=prac,
            location=catalog["location"],
            weekday=weekday,
            start_time=dt.time(9),
            end_time=dt.time(17),
        )
    tomorrow = clock.today("America/Toronto") + dt.timedelta(days=1)
    for days, hhmm, who in [(2, "10:00", kid), (3, "11:00", me)]:
        appointment_book(
            actor=owner.user,
            treatment=catalog["treatment"],
            practitioner=prac,
            location=catalog["location"],
            start=at((tomorrow + dt.timedelta(days=days)).isoformat(), hhmm),
            patients=[who],
        )
    soon = clock.now().astimezone(ZoneInfo("America/Toronto")) + dt.timedelta(hours=3)
    appointment_book(
        actor=owner.user,
        treatment=catalog["treatment"],
        practitioner=prac,
        location=catalog["location"],
        start=soon.replace(minute=0, second=0, microsecond=0),
        patients=[me],
    )  # inside the window
    ten = package_template(
        catalog,
        name="10 Massages",
        price=99000,
        quantity=10,
        sold_online=True,
        taxes=[catalog["tax"]],
    )
    sold_package(owner, me, ten)
    package_template(
        catalog, name="Plan package", price=80000, quantity=8, sold_online=True, instalments=4
    )
    membership_template(catalog, name="Wellness monthly", sold_online=True)
    return catalog, me, prac


@pytest.mark.parametrize("width,height", SIZES)
def test_every_portal_page_fits_the_screen_and_passes_axe(page, width, height):
    catalog, me, prac = _patient_with_history()
    page.set_viewport_size({"width": width, "height": height})
    book = f"/book/{catalog['location'].pk}/"
    page.goto(book)
    fits_and_accessible(page)
    Location.objects.create(
        name="Uptown Clinic With A Long Name",
        time_zone="America/Toronto",
        address="1234 Very Long Street Name, Suite 500, Vancouver BC",
    )
    page.goto("/book/")  # several locations: the choice, with hours and what can be booked
    fits_and_accessible(page)
    page.goto("/")  # the clinic's landing page for visitors: the same, with the doors to log in
    expect(page.get_by_role("link", name="Log in to your patient portal")).to_be_visible()
    fits_and_accessible(page)
    page.goto("/portal/login/")
    fits_and_accessible(page)
    log_in(page, me.user, path="/portal/login/")
    plan = PassTemplate.objects.get(name="Plan package")
    wellness = PassTemplate.objects.get(name="Wellness monthly")
    day = (clock.today("America/Toronto") + dt.timedelta(days=1)).isoformat()
    for path in [
        "/portal/",
        "/portal/passes/",
        "/portal/gift-cards/buy/",
        "/portal/account/password/",
        f"/portal/passes/buy/{plan.pk}/",
        f"/portal/memberships/sign-up/{wellness.pk}/",
        f"/portal/pay/{emails.pay_link_token(me)}/",
        "/portal/pay/not-a-token/",
        book,
        f"{book}?treatment={catalog['treatment'].pk}&practitioner={prac.pk}&day={day}",
    ]:
        page.goto(path)
        fits_and_accessible(page)
    with page.expect_navigation():
        page.locator(".slots a").first.click()
    fits_and_accessible(page)

    # A form sent with mistakes: the errors are tied to their inputs and still pass axe.
    page.goto(f"/portal/passes/buy/{plan.pk}/")
    page.get_by_role("button", name="Pay and buy").click()
    number = page.get_by_label("Card number")
    assert number.get_attribute("aria-invalid") == "true"
    assert (
        page.locator(f"#{number.get_attribute('aria-describedby').split()[-1]}")
        .inner_text()
        .strip()
    )
    fits_and_accessible(page)

    # The layout's message list after an action.
    page.goto("/portal/")
    expect(page.get_by_test_id("cancel-why")).to_contain_text("call My clinic at 555-0100")
    expect(page.locator("#appointments button:disabled", has_text="Cancel")).to_have_count(1)
    page.locator("#appointments button:enabled", has_text="Cancel").first.click()
    assert page.get_by_role("status").inner_text().startswith("Cancelled")
    fits_and_accessible(page)
