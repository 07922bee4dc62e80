"""A patient pays their balance through Stripe.js (localstripe's fake, served from its own origin):
the card number goes to Stripe only, never in any request to Carnet, and the page's CSP admits
exactly Stripe's origins."""

import pytest
from playwright.sync_api import expect

from carnet.billing.emails import pay_link_token
from carnet.billing.models import Payment
from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import fits_and_accessible, log_in, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import CardOnFile
from carnet.passes.tests.factories import package_template

NUMBER = "4242424242424242"
pytestmark = pytest.mark.browser


@pytest.fixture
def stripe_on(stripe_gateway, transactional_db):
    return stripe_gateway


def test_a_patient_pays_a_balance_through_stripe_js_and_no_card_number_reaches_carnet(
    stripe_on, page, live_server, catalog
):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient(email="pat@example.test")
    manual_invoice(staff, patient, 12000, category=catalog["income_category"])
    to_carnet = []

    def log(request):
        if request.url.startswith(live_server.url):
            to_carnet.append(f"{request.method} {request.url} {request.post_data or ''}")

    page.on("request", log)
    console = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(
        f"/portal/pay/{pay_link_token(patient)}/", timeout=30000
    )  # a loaded CI machine
    csp = response.headers["content-security-policy"]
    assert f"script-src 'self' {stripe_on};" in csp and f"frame-src {stripe_on};" in csp
    page.fill("input[name=holder]", "Pat Test")
    mount = page.locator("[data-stripe-mount]")
    mount.locator("input[placeholder=number]").fill(NUMBER)
    mount.locator("input[placeholder=exp_month]").fill("12")
    mount.locator("input[placeholder=exp_year]").fill("40")
    mount.locator("input[placeholder=cvc]").fill("123")
    page.get_by_role("button", name="Pay $120.00").click()
    try:
        expect(page.get_by_role("heading", level=1)).to_contain_text("Thank you", timeout=20000)
    except AssertionError:
        raise AssertionError(f"{page.inner_text('body')}\n{console}\n{to_carnet}") from None
    payment = Payment.objects.get()
    assert payment.amount_minor == 12000 and payment.gateway_charge_id.startswith("pi_")
    assert any("setup_intent=seti_" in line for line in to_carnet)  # what Carnet got: Stripe's id
    assert not any(NUMBER in line or "cvc" in line.lower() for line in to_carnet)


AUTHENTICATE = "4000002760003184"  # the bank asks on every payment (3-D Secure)


def _carnet_requests(page, live_server) -> list[str]:
    seen = []
    page.on(
        "request",
        lambda request: (
            seen.append(f"{request.method} {request.url} {request.post_data or ''}")
            if request.url.startswith(live_server.url)
            else None
        ),
    )
    return seen


def _type_card(page, number):
    mount = page.locator("[data-stripe-mount]")
    mount.locator("input[placeholder=number]").fill(number)
    mount.locator("input[placeholder=exp_month]").fill("12")
    mount.locator("input[placeholder=exp_year]").fill("40")
    mount.locator("input[placeholder=cvc]").fill("123")


def through_the_bank(page, number, button, asked=None):
    """Type a card whose bank asks, press `button`, and complete both of the bank's checks (the
    card's set-up, then the payment's) as localstripe's Stripe.js shows them; `asked()` runs on
    the page asking for the payment's check, before it is completed."""
    _type_card(page, number)
    page.get_by_role("button", name=button).click()
    page.get_by_role(
        "button", name="Complete authentication"
    ).click()  # the bank's check of the card's set-up
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Confirm the payment with your bank", timeout=20000
    )
    if asked is not None:
        asked()
    page.get_by_role(
        "button", name="Complete authentication"
    ).click()  # the bank's check of the payment


def test_a_patient_confirms_a_payment_with_the_bank_through_stripe_js(
    stripe_on, page, live_server, catalog
):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient(email="pat@example.test")
    manual_invoice(staff, patient, 12000, category=catalog["income_category"])
    to_carnet = _carnet_requests(page, live_server)
    page.goto(f"/portal/pay/{pay_link_token(patient)}/", timeout=30000)
    page.fill("input[name=holder]", "Pat Test")
    through_the_bank(page, AUTHENTICATE, "Pay $120.00")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Thank you", timeout=20000)
    payment = Payment.objects.get()
    assert payment.amount_minor == 12000 and payment.gateway_charge_id.startswith("pi_")
    assert any(f"payment_intent={payment.gateway_charge_id}" in line for line in to_carnet)
    assert not any(AUTHENTICATE in line or "cvc" in line.lower() for line in to_carnet)


def test_the_desk_takes_a_new_card_through_stripe_js_and_no_card_number_reaches_carnet(
    stripe_on, page, live_server, catalog
):
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient()
    package_template(catalog, name="5 massages", price=40000, quantity=5)
    log_in(page, desk.user)
    to_carnet = _carnet_requests(page, live_server)
    response = page.goto(f"/patients/{patient.pk}/billing/purchase/", timeout=30000)
    assert f"frame-src {stripe_on};" in response.headers["content-security-policy"]
    page.get_by_label("Package 1").select_option(label="5 massages — $400.00")
    page.get_by_label("Payment").select_option("new_card")
    page.fill("input[name=holder]", "Pat Test")
    through_the_bank(page, AUTHENTICATE, "Sell")
    expect(page.locator(".messages")).to_contain_text("Received $400.00 by card", timeout=20000)
    payment = Payment.objects.get()
    assert payment.amount_minor == 40000 and payment.gateway_charge_id.startswith("pi_")
    assert any("setup_intent=seti_" in line for line in to_carnet)
    assert not any(
        AUTHENTICATE in line or "cvc" in line.lower() or "exp_month" in line for line in to_carnet
    )


def test_the_desk_adds_a_card_on_file_through_stripe_js_and_no_card_number_reaches_carnet(
    stripe_on, page, live_server
):
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient()
    log_in(page, desk.user)
    to_carnet = _carnet_requests(page, live_server)
    response = page.goto(f"/patients/{patient.pk}/billing/cards/new/", timeout=30000)
    assert f"script-src 'self' {stripe_on};" in response.headers["content-security-policy"]
    page.fill("input[name=holder]", "Pat Test")
    _type_card(page, NUMBER)
    page.get_by_role("button", name="Save card").click()
    expect(page.locator(".messages")).to_contain_text("•••• 4242 saved", timeout=20000)
    assert CardOnFile.objects.get(patient=patient).token.startswith("pm_")
    assert any("setup_intent=seti_" in line for line in to_carnet)
    assert not any(NUMBER in line or "cvc" in line.lower() for line in to_carnet)


def test_the_desk_receives_a_payment_by_a_new_card_through_stripe_js_on_a_laptop_and_a_tablet(
    stripe_on, page, live_server, catalog
):
    """Receive payment for invoices that already exist: at each size the page fits and passes axe
    with Stripe.js's field in it, and the desk pays one invoice by a new card (the second one's bank
    asks, and the check is completed on the page); no request to Carnet carries the card."""
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient()
    invoices = [
        manual_invoice(desk, patient, 6000, category=catalog["income_category"]) for _ in range(2)
    ]
    log_in(page, desk.user)
    to_carnet = _carnet_requests(page, live_server)
    for (width, height), invoice, number in zip(
        [(1366, 900), (820, 1180)], invoices, [NUMBER, AUTHENTICATE]
    ):
        page.set_viewport_size({"width": width, "height": height})
        url = f"/patients/{patient.pk}/billing/payment/?invoice={invoice.pk}"
        response = page.goto(url, timeout=30000)
        assert f"frame-src {stripe_on};" in response.headers["content-security-policy"]
        page.select_option("select[name=method]", "new_card")
        expect(page.get_by_test_id("payment-new-card")).to_be_visible()
        fits_and_accessible(page)
        page.fill("input[name=holder]", "Pat Test")
        if number == AUTHENTICATE:
            through_the_bank(page, number, "Record payment")
            done = "Received $60.00 by card."
        else:
            _type_card(page, number)
            page.get_by_role("button", name="Record payment").click()
            done = "Received $60.00 by Card on file / online."
        expect(page.locator(".messages")).to_contain_text(done, timeout=20000)
        invoice.refresh_from_db()
        assert invoice.balance_minor == 0
    payments = list(Payment.objects.order_by("pk"))
    assert [p.amount_minor for p in payments] == [6000, 6000]
    assert all(p.gateway_charge_id.startswith("pi_") for p in payments)
    assert sum("setup_intent=seti_" in line for line in to_carnet) == 2
    assert not any(
        NUMBER in line or AUTHENTICATE in line or "cvc" in line.lower() or "exp_month" in line
        for line in to_carnet
    )
