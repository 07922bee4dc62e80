"""A card update link (issue 22 point 3) on a phone, in a real browser: the patient opens the
emailed link, adds a card with the test gateway's form and sees what was owed paid; the link, once
used or expired, gets its page. Every page fits 390x844 and passes axe."""

import datetime as dt

import pytest
from playwright.sync_api import expect

from carnet.billing.models import CardAttempt, Payment
from carnet.conftest import fits_and_accessible, make_patient
from carnet.core import clock
from carnet.gateway.services import card_store
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import card_requests as cr
from carnet.passes.memberships import services as ms
from carnet.passes.tests.factories import membership_template
from carnet.portal.tests.test_browser_stripe import AUTHENTICATE, through_the_bank
from carnet.scheduling.tests.factories import clinic_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DECLINED = "4000000000000002"


@pytest.fixture
def member(front_desk, catalog, settings):
    """A member whose card is declined, two cycles owed (no frozen clock: the live server's thread
    would not share it)."""
    settings.SITE_URL = "https://clinic.example"
    clinic_set(time_zone="America/Toronto", phone="555-0100", email="desk@clinic.test")
    patient = make_patient(
        email="pat@example.test", first_name="Pat", last_name="Longname-Householder"
    )
    card = card_store(
        actor=front_desk.user,
        patient=patient,
        number=DECLINED,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Pat",
    )
    today = clock.today("America/Toronto")
    sold = ms.membership_sell(
        actor=front_desk.user,
        patient=patient,
        template=membership_template(catalog),
        payment_mode="automatic",
        card=card,
        start_date=today - dt.timedelta(days=35),
    )
    passes_daily(today=today)
    return sold


def test_a_patient_adds_a_card_through_the_link_on_a_phone_and_the_owed_cycles_are_paid(
    page, member, front_desk
):
    owing = cr.owing_minor(member)
    assert owing > 0
    token = cr.card_update_token(cr.card_update_request(sold_pass=member, actor=front_desk.user))
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/portal/card/{token}/")
    expect(page.get_by_test_id("owing")).to_be_visible()
    fits_and_accessible(page)
    button = page.get_by_role("button", name="Save card and pay")
    button.click()  # nothing typed: the mistakes are tied to their inputs and still pass axe
    number = page.get_by_label("Card number")
    assert number.get_attribute("aria-invalid") == "true"
    fits_and_accessible(page)
    page.get_by_label("Name on card").fill("Pat Longname-Householder")
    number.fill("4242 4242 4242 4242")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill("2040")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_role("button", name="Save card and pay").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    expect(page.get_by_test_id("card-saved")).to_contain_text("4242")
    expect(page.get_by_test_id("nothing-owing")).to_be_visible()
    fits_and_accessible(page)
    assert sum(p.amount_minor for p in Payment.objects.filter(gateway_charge_id__gt="")) == owing
    assert cr.owing_minor(member) == 0

    page.goto(f"/portal/card/{token}/")  # the link again: used
    expect(page.get_by_role("heading", level=1)).to_have_text("This link was already used")
    fits_and_accessible(page)


def test_an_expired_link_page_fits_a_phone(page, member, front_desk):
    req = cr.card_update_request(sold_pass=member, actor=front_desk.user)
    req.expires_at = clock.now() - dt.timedelta(minutes=1)
    req.save(update_fields=["expires_at"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/portal/card/{cr.card_update_token(req)}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired")
    expect(page.get_by_test_id("link-message")).to_contain_text("Ask the clinic to send a new one")
    fits_and_accessible(page)


def test_a_bank_asking_for_3d_secure_is_answered_on_the_card_update_page_on_a_phone(
    stripe_gateway, page, front_desk, catalog, settings
):
    """With Stripe (localstripe's Stripe.js): the owed cycle is charged while the patient is at the
    page, so the bank's check opens there and, once confirmed, the cycle is paid."""
    settings.SITE_URL = "https://clinic.example"
    clinic_set(time_zone="America/Toronto", phone="555-0100")
    patient = make_patient(email="pat@example.test", first_name="Pat")
    sold = ms.membership_sell(
        actor=front_desk.user,
        patient=patient,
        template=membership_template(catalog),
        start_date=clock.today("America/Toronto"),
    )  # manual: its cycle owed
    owing = cr.owing_minor(sold)
    token = cr.card_update_token(cr.card_update_request(sold_pass=sold, actor=front_desk.user))
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/portal/card/{token}/", timeout=30000)
    page.fill("input[name=holder]", "Pat Test")

    # Carnet's page at a phone's size (localstripe's stand-in for the bank's window set aside).
    def asked():
        bank = page.get_by_role("button", name="Complete authentication").element_handle()
        bank.evaluate("b => b.closest('body > *').style.display = 'none'")
        fits_and_accessible(page)
        bank.evaluate("b => b.closest('body > *').style.display = ''")
        assert not Payment.objects.exists() and CardAttempt.objects.get().status == "pending"

    through_the_bank(page, AUTHENTICATE, "Save card and pay", asked)
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you", timeout=20000)
    expect(page.get_by_test_id("nothing-owing")).to_be_visible()
    fits_and_accessible(page)
    payment = Payment.objects.get()
    assert (
        payment.amount_minor == owing
        and payment.gateway_charge_id == CardAttempt.objects.get().gateway_id
    )
    assert cr.owing_minor(sold) == 0
