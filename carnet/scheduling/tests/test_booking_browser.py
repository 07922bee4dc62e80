"""In a real browser, at a phone's and a desktop's size: a new patient finds online booking from the
portal's login page, picks a treatment (its length and price shown) and "any practitioner", takes
the first available time, signs up (a link by email to choose the password), confirms, and sees the
appointment in My Account. Every page fits the screen and passes axe-core."""

import datetime as dt
import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from carnet.conftest import fits_and_accessible, make_catalog
from carnet.core import clock
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment

from .factories import at, practitioner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(390, 844), (1366, 900)])
def test_a_new_patient_books_online_and_sees_it_in_the_portal(page, width, height):
    page.set_viewport_size({"width": width, "height": height})
    catalog = make_catalog()
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    prac = practitioner(catalog["location"])
    prac.display_name = "Paula Pract"
    prac.save()
    Shift.objects.create(
        staff=prac,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(12),
    )
    with clock.frozen(at("2026-03-09", "12:00")):  # a Monday: nobody works before Tuesday
        page.goto("/portal/login/")
        page.get_by_role("link", name="Book online").click()
        fits_and_accessible(page)
        page.get_by_label("Treatment").select_option(label="Massage 60 (60 min) · $101.70")
        expect(page.get_by_label("Practitioner")).to_have_value("")  # any practitioner
        page.get_by_role("button", name="Show available times").click()
        expect(page.get_by_test_id("first-available")).to_contain_text(
            "Tuesday 10 March at 09:00 with Paula Pract"
        )
        fits_and_accessible(page)
        page.get_by_test_id("first-available").get_by_role("link").click()
        expect(page.get_by_text("Tuesday 10 March 2026 at 09:00")).to_be_visible()
        expect(page.get_by_test_id("visit-quote")).to_have_text(
            "You pay $101.70 (tax included) at the clinic."
        )
        fits_and_accessible(page)

        page.get_by_label("First name").fill("Nora")
        page.get_by_label("Last name").fill("Newcomer")
        page.get_by_label("Email").fill("nora@example.test")
        page.get_by_role("button", name="Sign up and continue").click()
        expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
        fits_and_accessible(page)
        link = re.search(r"https?://\S+", mail.outbox[-1].body.split("open this link:")[1]).group(0)
        page.goto(link)
        page.fill("input[name=password]", "a long pass phrase 42")
        page.get_by_label("New password again").fill("a long pass phrase 42")
        page.get_by_role("button", name="Save my password and continue to my booking").click()
        expect(page.get_by_text("Booking for Nora Newcomer")).to_be_visible()
        fits_and_accessible(page)
        page.get_by_role("button", name="Confirm booking").click()

        expect(page.get_by_text("Booked: Massage 60 with Paula Pract")).to_be_visible()
        row = page.locator("#appointments tr", has_text="Massage 60")
        expect(row).to_contain_text("Tue 2026-03-10 09:00")
        expect(row.get_by_role("button", name="Cancel")).to_be_visible()
        fits_and_accessible(page)
    assert Appointment.objects.get().booked_by == "online"
