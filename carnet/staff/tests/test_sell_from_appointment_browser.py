"""In a real browser, at a laptop's and a tablet's size: from an appointment's panel the desk sells
a package in the checkout (the package that covers the visit already chosen), charges a new card
through the gateway's card form in the same step, and is back on the schedule with the panel open
and the package covering the visit."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from carnet.billing.models import Payment
from carnet.clinic.models import Tax
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import CardOnFile
from carnet.passes.models import Pass, PassTemplate
from carnet.passes.tests.factories import membership_template, package_template
from carnet.scheduling.tests.factories import at, book, working_practitioner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MONDAY = "2030-01-07"


@pytest.mark.parametrize("width,height", [(1366, 900), (820, 1180)])
def test_sell_a_package_from_the_appointment_and_see_it_applied(page, width, height):
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    prac = working_practitioner(catalog["location"])
    package_template(catalog, name="5 massages", price=40000, quantity=5)
    with clock.frozen(at(MONDAY, "08:30")):
        patient = make_patient(first_name="Rosalind", last_name="Achebe")
        visit = book(desk, catalog, prac, at(MONDAY, "10:00"), patients=[patient])
        page.set_viewport_size({"width": width, "height": height})
        log_in(page, desk.user)
        page.goto(f"/schedule/?location={catalog['location'].pk}&date={MONDAY}&open={visit.pk}")
        panel = page.locator("#panel")
        expect(panel.get_by_test_id("pass-none")).to_be_visible()
        panel.get_by_role("link", name="Sell a package").click()

        expect(page.get_by_test_id("checkout-visit")).to_contain_text("Massage 60")
        expect(page.get_by_label("Package 1")).to_have_value(str(PassTemplate.objects.get().pk))
        _accessible_then_sell_with_a_new_card(page)

        expect(page.get_by_text("5 massages now covers the appointment.")).to_be_visible()
        assert "/schedule/" in page.url and f"open={visit.pk}" in page.url
        expect(page.locator("#panel").get_by_test_id("pass-covering")).to_contain_text("5 massages")
        assert Pass.objects.get().reserved_count == 1
        assert Payment.objects.get().method == Payment.Method.CARD_GATEWAY


@pytest.mark.parametrize("width,height", [(1366, 900), (820, 1180)])
def test_sell_a_package_and_a_membership_from_the_appointment_with_a_new_card_and_live_totals(
    page, width, height
):
    """Issue 20 point 1: Add items, the live totals following the cart (each tax named), a package
    and a membership paid automatically by a new card in one checkout,
    the package covering the visit."""
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    prac = working_practitioner(catalog["location"])
    gst = Tax.objects.create(name="GST", rate="5")
    package_template(catalog, name="5 massages", price=40000, quantity=5, taxes=[gst])
    monthly = membership_template(catalog, name="Wellness monthly", price=6000)
    with clock.frozen(at(MONDAY, "08:30")):
        patient = make_patient(first_name="Rosalind", last_name="Achebe")
        visit = book(desk, catalog, prac, at(MONDAY, "10:00"), patients=[patient])
        page.set_viewport_size({"width": width, "height": height})
        log_in(page, desk.user)
        page.goto(f"/schedule/?location={catalog['location'].pk}&date={MONDAY}&open={visit.pk}")
        page.locator("#panel").get_by_role("link", name="Add items").click()

        expect(page.get_by_test_id("checkout-visit")).to_contain_text("Massage 60")
        totals = page.get_by_test_id("checkout-totals")
        expect(totals.get_by_test_id("checkout-total")).to_have_text("$0.00")
        page.get_by_label("Package 1").select_option(
            label="5 massages — $400.00 (covers this visit)"
        )
        expect(totals).to_contain_text("GST (5%)")
        expect(totals.get_by_test_id("checkout-total")).to_have_text("$420.00")
        page.get_by_label("Membership", exact=True).select_option(value=str(monthly.pk))
        expect(totals.get_by_test_id("checkout-total")).to_have_text("$480.00")
        page.get_by_label("Later cycles").select_option(value="automatic")
        _accessible_then_sell_with_a_new_card(page)

        expect(page.get_by_text("5 massages now covers the appointment.")).to_be_visible()
        assert "/schedule/" in page.url and f"open={visit.pk}" in page.url
        expect(page.locator("#panel").get_by_test_id("pass-covering")).to_contain_text("5 massages")
        membership = Pass.objects.get(kind="membership")
        kept = CardOnFile.objects.get(patient=patient)
        assert (membership.payment_mode, membership.card_id) == ("automatic", kept.pk)
        payment = Payment.objects.get()
        assert (payment.method, payment.amount_minor, payment.card_id) == (
            Payment.Method.CARD_GATEWAY,
            48000,
            kept.pk,
        )


def _accessible_then_sell_with_a_new_card(page):
    """axe finds nothing in the checkout, then the desk pays with a new card and sells."""
    results = Axe().run(page, context={"include": [["main"]], "exclude": [[".messages"]]})
    assert results.violations_count == 0, results.generate_report()
    page.get_by_label("Payment", exact=True).select_option(label="New card")
    card = page.get_by_test_id("checkout-new-card")
    card.get_by_label("Name on card").fill("Rosalind Achebe")
    card.get_by_label("Card number").fill("4242 4242 4242 4242")
    card.get_by_label("Expiry month").fill("12")
    card.get_by_label("Expiry year").fill("2040")
    card.get_by_label("CVC").fill("123")
    page.get_by_role("button", name="Sell").click()
