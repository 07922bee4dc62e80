"""In a real browser, at a laptop's and a tablet's size: Front Desk clicks a free slot and books in
the schedule's panel (patient type-ahead that keeps the choice, only the practitioner's treatments,
end time, price and the package auto-select will use), without leaving the schedule; then arrives
the visit from the appointment panel (an htmx swap, no page reload) and sees it covered."""

import datetime as dt

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.models import Pass
from carnet.passes.tests.factories import package_template, sold_package
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment
from carnet.scheduling.tests.factories import treatment_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width,height", [(1366, 900), (820, 1180)])
def test_book_from_a_free_slot_in_the_panel_then_arrive(page, width, height):
    catalog = make_catalog()
    location = catalog["location"]
    prac = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK, practitioner=True, name="Dr Ines Ortega")
    prac.locations.add(location)
    prac.treatments.add(catalog["treatment"])  # Massage 60 only: another treatment is not offered
    treatment_of(catalog, "individual", name="Acupuncture 45")
    Shift.objects.create(
        staff=prac, location=location, weekday=0, start_time=dt.time(9), end_time=dt.time(12)
    )
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    chosen = make_patient(first_name="Marguerite", last_name="Okafor", phone="416-555-0199")
    make_patient(first_name="Oksana", last_name="Okafor-Lee")
    sold_package(desk, chosen, package_template(catalog, name="5 massages", quantity=5))
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, desk.user)

    page.goto(f"/schedule/?location={location.pk}&date=2030-01-07")
    page.evaluate("window.__notReloaded = true")
    page.get_by_role("link", name="Book Dr Ines Ortega at Mon 7 Jan 10:00").click()
    panel = page.get_by_test_id("book-panel")
    search = panel.get_by_role("searchbox", name="Patient")
    expect(search).to_be_focused()
    treatments = panel.get_by_label("Treatment")
    expect(treatments.locator("option", has_text="Acupuncture 45")).to_have_count(0)
    treatments.select_option(label="Massage 60")
    expect(panel.get_by_test_id("book-end")).to_have_text("11:00 (60 min)")
    expect(panel.get_by_test_id("book-price")).to_have_text("$101.70")
    search.fill("555-0199")  # by phone
    panel.get_by_role("radio", name="Marguerite Okafor").check()
    expect(panel.get_by_test_id("book-package")).to_contain_text(
        "5 massages — 4 left after this visit"
    )
    search.fill("oksana")  # searching again keeps the patient chosen, and the treatment
    expect(panel.get_by_role("radio", name="Oksana Okafor-Lee")).to_be_visible()
    expect(panel.get_by_role("radio", name="Marguerite Okafor")).to_be_checked()
    expect(treatments).to_have_value(str(catalog["treatment"].pk))
    results = Axe().run(page, context={"include": [["#panel"]]})
    assert results.violations_count == 0, results.generate_report()
    panel.get_by_role("button", name="Book", exact=True).click()

    appointment_panel = page.get_by_test_id("appointment-panel")
    expect(appointment_panel).to_contain_text("Marguerite Okafor")
    appointment = Appointment.objects.get()
    block = page.get_by_test_id(f"appointment-{appointment.pk}")
    expect(block).to_contain_text("Marguerite Okafor")  # the column was redrawn in place
    expect(block.get_by_test_id(f"covered-{appointment.pk}")).to_be_visible()
    expect(page.get_by_role("link", name="Book Dr Ines Ortega at Mon 7 Jan 10:15")).to_have_count(0)
    appointment_panel.get_by_role("button", name="Arrive").click()
    expect(page.get_by_test_id("appointment-status")).to_have_text("Arrived")
    expect(block).to_contain_text("Arrived")  # the grid block too
    assert page.evaluate("window.__notReloaded") is True
    assert "/schedule/" in page.url
    assert Pass.objects.get().used_count == 1
