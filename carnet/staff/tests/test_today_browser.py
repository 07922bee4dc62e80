"""In a real browser, at a laptop's and a tablet's size: the front desk opens Carnet on Today, sees
the day's appointments and who owes, and arrives a patient in one click from the list."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.scheduling import arrival
from carnet.scheduling.models import Status
from carnet.scheduling.tests.factories import at, book, working_practitioner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MONDAY = "2030-01-07"


@pytest.mark.parametrize("width,height", [(1366, 900), (820, 1180)])
def test_today_lists_the_day_and_arrives_in_one_click(page, width, height):
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    prac = working_practitioner(catalog["location"], "Dr Ines Ortega")
    with clock.frozen(at(MONDAY, "08:30")):
        rosalind = make_patient(first_name="Rosalind", last_name="Achebe")
        owen = make_patient(first_name="Owen", last_name="Debt")
        visit = book(desk, catalog, prac, at(MONDAY, "09:00"), patients=[rosalind])
        earlier = book(desk, catalog, prac, at(MONDAY, "11:00"), patients=[owen])
        arrival.appointment_arrive(actor=desk.user, appointment=earlier)  # unpaid: Owen owes
        page.set_viewport_size({"width": width, "height": height})
        log_in(page, desk.user)
        expect(
            page.get_by_role("heading", name=f"{catalog['location'].name} · Monday 7 January")
        ).to_be_visible()
        row = page.get_by_test_id(f"today-appointment-{visit.pk}")
        expect(row).to_contain_text("Rosalind Achebe")
        expect(row).to_contain_text("Booked")
        expect(page.get_by_test_id(f"owes-{earlier.pk}")).to_contain_text("Owes $101.70")
        expect(page.get_by_test_id("today-owing")).to_contain_text("Owen Debt")
        results = Axe().run(page, context={"include": [["main"]], "exclude": [[".messages"]]})
        assert results.violations_count == 0, results.generate_report()
        fits = page.evaluate("""() => [...document.querySelectorAll('main *')]
            .filter(e => !e.closest('.table-scroll')
                && e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName + '.' + e.className)""")
        assert fits == []

        row.get_by_role(
            "link", name="Arrive"
        ).click()  # the schedule, with this appointment's panel open
        page.locator("#panel").get_by_role("button", name="Arrive").click()
        expect(page.locator("#panel")).to_contain_text("Arrived")
        visit.refresh_from_db()
        assert visit.status == Status.ARRIVED
        page.get_by_role("link", name="Dashboard").click()
        expect(page.get_by_test_id(f"today-counts-{catalog['location'].pk}")).to_contain_text(
            "0 to arrive"
        )
        expect(page.get_by_test_id(f"today-counts-{catalog['location'].pk}")).to_contain_text(
            "2 arrived"
        )
