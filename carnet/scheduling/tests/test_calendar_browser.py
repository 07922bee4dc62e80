"""In a real browser, at a laptop's and a tablet's size: the schedule is a calendar whose block
heights match the appointments' durations, with free time visible and a legend; it passes axe."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.scheduling.tests.factories import at, book, treatment_of, working_practitioner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MONDAY = "2030-01-07"


@pytest.mark.parametrize("width,height", [(1366, 900), (820, 1180)])
def test_block_heights_match_durations(page, width, height):
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK)
    prac = working_practitioner(catalog["location"], "Dr Ines Ortega")
    short = treatment_of(catalog, "individual", name="Check-up 30")
    short.duration_minutes = 30
    short.save()
    hour = book(desk, catalog, prac, at(MONDAY, "10:00"), patients=[make_patient()])
    half = book(
        desk, catalog, prac, at(MONDAY, "13:00"), patients=[make_patient()], treatment=short
    )
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, desk.user)
    page.goto(f"/schedule/?location={catalog['location'].pk}&date={MONDAY}")
    long_box = page.get_by_test_id(f"appointment-{hour.pk}").bounding_box()
    short_box = page.get_by_test_id(f"appointment-{half.pk}").bounding_box()
    slot = page.get_by_role("link", name="Book Dr Ines Ortega at Mon 7 Jan 09:00").bounding_box()
    # 60 minutes is twice 30 and four 15-minute slots (each block leaves a 1px
    # margin above and below).
    assert abs((long_box["height"] + 2) - 2 * (short_box["height"] + 2)) <= 1.5
    assert abs((long_box["height"] + 2) - 4 * slot["height"]) <= 2
    # Placed by time: 13:00 is three hours below 10:00, i.e. 12 slots.
    assert abs((short_box["y"] - long_box["y"]) - 12 * slot["height"]) <= 2
    expect(
        page.get_by_role("link", name="Book Dr Ines Ortega at Mon 7 Jan 11:00")
    ).to_be_visible()  # free time
    expect(page.get_by_role("list", name="Legend")).to_contain_text("Free: click a time to book")
    results = Axe().run(page, context={"include": [["main"]], "exclude": [[".messages"]]})
    assert results.violations_count == 0, results.generate_report()

    page.get_by_test_id(f"appointment-{hour.pk}").click()
    panel = page.get_by_test_id("appointment-panel")
    expect(panel).to_be_visible()
    box = page.locator("#panel").bounding_box()
    if width < 900:  # a drawer over the calendar, not a panel below the whole day
        assert box["y"] <= 1 and abs(box["x"] + box["width"] - width) <= 1
        page.get_by_role("button", name="Close").click()
        expect(panel).to_have_count(0)
        expect(page.get_by_test_id(f"appointment-{half.pk}")).to_be_visible()
    else:  # beside the calendar
        assert box["x"] > page.get_by_test_id("schedule").bounding_box()["x"] + 300
