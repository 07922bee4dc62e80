"""In a real browser: a patient has a paid package; Front Desk books an eligible visit from the
schedule, the panel shows the package already selected, and arriving leaves $0.00 to pay."""

import datetime as dt

import pytest
from playwright.sync_api import expect

from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.passes.tests.factories import package_template, practitioner, sold_package
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_book_an_eligible_visit_see_the_package_selected_and_arrive_for_nothing(page):
    catalog = make_catalog()
    location = catalog["location"]
    desk = make_staff(name="Dana Desk")  # Front Desk with billing access
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    sold = sold_package(desk, patient, package_template(catalog, name="Five massages", quantity=5))
    prac = practitioner(location)
    prac.display_name = "Dr Ines Ortega"
    prac.save()
    Shift.objects.create(
        staff=prac, location=location, weekday=0, start_time=dt.time(9), end_time=dt.time(12)
    )
    log_in(page, desk.user)

    page.goto(f"/schedule/?location={location.pk}&date=2030-01-07")
    page.get_by_role("link", name="Book Dr Ines Ortega at Mon 7 Jan 10:00").click()
    book = page.get_by_test_id("book-panel")  # the booking form opens in the schedule's panel
    book.get_by_label("Treatment").select_option(label="Massage 60")
    book.get_by_role("searchbox", name="Patient").fill("okafor")
    book.get_by_role("radio", name="Marguerite Okafor").check()
    expect(book.get_by_test_id("book-package")).to_contain_text("Five massages")  # auto-selected
    book.get_by_role("button", name="Book", exact=True).click()

    panel = page.get_by_test_id("appointment-panel")
    covering = panel.get_by_test_id("pass-covering")
    expect(covering).to_contain_text("Five massages")
    expect(panel).to_contain_text("4 remaining")
    appointment = Appointment.objects.get()
    expect(page.get_by_test_id(f"covered-{appointment.pk}")).to_be_visible()  # the schedule's icon

    panel.get_by_role("link", name="Why not?").click()
    expect(panel.get_by_test_id("pass-explain")).to_contain_text("Already covers this booking.")

    panel.get_by_role("button", name="Arrive").click()
    expect(page.get_by_test_id("appointment-status")).to_have_text("Arrived")
    invoices = page.get_by_test_id("appointment-invoices")
    expect(invoices).to_contain_text("$0.00")
    expect(panel).to_contain_text("Used")
    visit = appointment.visits.get()
    assert visit.invoice.total_minor == 0 and visit.invoice.balance_minor == 0
    sold.refresh_from_db()
    assert (sold.reserved_count, sold.posted_count) == (0, 1)
