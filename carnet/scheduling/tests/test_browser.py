"""In a real browser: Front Desk books from an empty slot on the schedule, arrives the visit from
the appointment panel (an htmx swap, no page reload) and sees the invoice there."""

import datetime as dt

import pytest
from playwright.sync_api import expect

from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_book_from_the_schedule_arrive_and_see_the_invoice(page):
    catalog = make_catalog()
    location = catalog["location"]
    prac = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK, practitioner=True, name="Dr Ines Ortega")
    prac.locations.add(location)
    Shift.objects.create(staff=prac, location=location, weekday=0, start_time=dt.time(9), end_time=dt.time(12))
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    make_patient(first_name="Marguerite", last_name="Okafor")
    log_in(page, desk.user)

    page.get_by_role("link", name="Schedule").click()
    page.goto(f"/schedule/?location={location.pk}&date=2030-01-07")
    page.get_by_role("link", name="Book Dr Ines Ortega at Mon 7 Jan 10:00").click()
    expect(page.get_by_label("Treatment")).to_be_focused()
    page.get_by_role("searchbox", name="Find patient").fill("okafor")
    page.get_by_role("button", name="Search").click()
    page.get_by_label("Treatment").select_option(label="Massage 60")
    page.locator("#id_patient").select_option(label="Marguerite Okafor")
    page.get_by_role("button", name="Book", exact=True).click()

    panel = page.get_by_test_id("appointment-panel")
    expect(panel).to_contain_text("Marguerite Okafor")
    expect(page.get_by_test_id("schedule")).to_contain_text("Marguerite Okafor")
    appointment = Appointment.objects.get()
    page.evaluate("window.__notReloaded = true")
    panel.get_by_role("button", name="Arrive").click()
    expect(page.get_by_test_id("appointment-status")).to_have_text("Arrived")
    invoices = page.get_by_test_id("appointment-invoices")
    expect(invoices).to_contain_text("$101.70")
    expect(invoices.get_by_role("link", name="Receipt")).to_be_visible()
    expect(page.get_by_test_id(f"appointment-{appointment.pk}")).to_contain_text("Arrived")  # the grid block too
    assert page.evaluate("window.__notReloaded") is True
    assert appointment.participants.get().invoice.total_minor == 10170
