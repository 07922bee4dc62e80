"""In a real browser: a new patient books online (treatment, practitioner, slot), signs up, confirms,
and sees the appointment in My Account."""

import datetime as dt

import pytest
from playwright.sync_api import expect

from carnet.conftest import make_catalog
from carnet.core import clock
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment

from .factories import at, practitioner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_new_patient_books_online_and_sees_it_in_the_portal(page):
    catalog = make_catalog()
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    prac = practitioner(catalog["location"])
    prac.display_name = "Paula Pract"
    prac.save()
    Shift.objects.create(staff=prac, location=catalog["location"], weekday=1, start_time=dt.time(9),
                         end_time=dt.time(12))
    with clock.frozen(at("2026-03-09", "12:00")):
        page.goto(f"/book/{catalog['location'].pk}/")
        page.get_by_label("Treatment").select_option(label="Massage 60 (60 min)")
        page.get_by_label("Practitioner").select_option(label="Paula Pract")
        page.get_by_label("Date").fill("2026-03-10")
        page.get_by_role("button", name="Show available times").click()
        page.get_by_role("link", name="10:00").click()
        expect(page.get_by_text("Tuesday 10 March 2026 at 10:00")).to_be_visible()

        page.get_by_label("First name").fill("Nora")
        page.get_by_label("Last name").fill("Newcomer")
        page.get_by_label("Email").fill("nora@example.test")
        page.get_by_label("Password").fill("a long pass phrase 42")
        page.get_by_role("button", name="Sign up and continue").click()
        expect(page.get_by_text("Booking for Nora Newcomer")).to_be_visible()
        page.get_by_role("button", name="Confirm booking").click()

        expect(page.get_by_text("Booked: Massage 60 with Paula Pract")).to_be_visible()
        row = page.locator("#appointments tr", has_text="Massage 60")
        expect(row).to_contain_text("Tue 2026-03-10 10:00")
        expect(row.get_by_role("button", name="Cancel")).to_be_visible()
    assert Appointment.objects.get().booked_by == "online"
