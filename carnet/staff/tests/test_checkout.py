"""Billing → New purchase, one checkout: packages and products sold together with the payment
taken in the same step; a refused payment refuses the sale; the over-tender question; credit and
gift cards as tenders; a double submit sells once."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from carnet.billing import card_attempts
from carnet.billing.models import CardAttempt, Invoice, InvoiceLineTax, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import product
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.clinic.models import Tax
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.gateway.models import CardOnFile
from carnet.gateway.services import card_store
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import gift_card_create_and_load
from carnet.passes.charging import pass_charge_due
from carnet.passes.models import Pass
from carnet.passes.redeeming.redemption import pass_attach
from carnet.passes.selectors import pass_unlocked, visit_redemption
from carnet.passes.tests.factories import membership_template, package_template, sold_package
from carnet.scheduling.tests.factories import at, book, treatment_of, working_practitioner

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(client, front_desk, catalog):
    client.force_login(front_desk.user)
    patient = make_patient()
    return {
        "client": client,
        "fd": front_desk,
        "cat": catalog,
        "patient": patient,
        "url": reverse("billing:purchase_new", kwargs={"pk": patient.pk}),
        "template": package_template(catalog, name="5 massages", price=40000, quantity=5),
        "oil": product(catalog["income_category"], price=2500, stock=5),
    }


def _post(s, **data):
    return s["client"].post(
        s["url"], {"form_key": data.pop("form_key", "k1"), "method": "cash", **data}
    )


def test_the_new_purchase_page_offers_packages(s):
    page = s["client"].get(s["url"]).content.decode()
    assert "5 massages — $400.00" in page and "Packages" in page and "Oil 2500-5 — $25.00" in page


def test_a_package_and_a_product_sold_and_paid_in_one_step(s):
    response = _post(s, package_0=s["template"].pk, product_0=s["oil"].pk, quantity_0=2)
    assert response.status_code == 302 and response["Location"] == reverse(
        "billing:tab", kwargs={"pk": s["patient"].pk}
    )
    sold = Pass.objects.get()
    assert (
        sold.location == s["cat"]["location"] and pass_unlocked(sold) == 5
    )  # paid: usable at once
    invoices = Invoice.objects.order_by("pk")
    assert [i.total_minor for i in invoices] == [40000, 5000] and all(
        i.balance_minor == 0 for i in invoices
    )
    payment = Payment.objects.get()
    assert payment.amount_minor == 45000 and payment.unapplied_minor == 0
    message = s["client"].get(response["Location"]).content.decode()
    assert "$450.00 in all — paid." in message
    assert_ledger_ok()


def test_part_payment_fills_the_package_first(s):
    _post(s, package_0=s["template"].pk, product_0=s["oil"].pk, amount="400.00")
    package_invoice, product_invoice = Invoice.objects.order_by("pk")
    assert package_invoice.balance_minor == 0 and product_invoice.balance_minor == 2500
    assert pass_unlocked(Pass.objects.get()) == 5


def test_pay_later_leaves_it_owing(s):
    _post(s, package_0=s["template"].pk, method="later")
    assert Invoice.objects.get().balance_minor == 40000 and not Payment.objects.exists()


def test_a_typo_above_the_total_is_asked_about_and_nothing_is_sold_until_answered(s):
    page = _post(s, package_0=s["template"].pk, amount="4000.00").content.decode()
    assert "Record $3,600.00 as credit?" in page and 'value="360000"' in page
    assert (
        not Pass.objects.exists() and not Invoice.objects.exists() and not Payment.objects.exists()
    )
    _post(s, package_0=s["template"].pk, amount="4000.00", credit_ok="360000")
    assert Payment.objects.get().unapplied_minor == 360000 and Pass.objects.count() == 1


def test_a_refused_payment_refuses_the_sale(s):
    page = _post(
        s, package_0=s["template"].pk, method="gift_card", gift_card_code="NOPE-1"
    ).content.decode()
    assert "No gift card" in page
    assert not Pass.objects.exists() and not Invoice.objects.exists()
    assert (
        "Enter the gift card"
        in _post(s, product_0=s["oil"].pk, method="gift_card").content.decode()
    )


def test_account_credit_pays_the_sale(s):
    payment_receive(actor=s["fd"].user, patient=s["patient"], method="cash", amount_minor=3000)
    _post(s, product_0=s["oil"].pk, method="credit")
    invoice = Invoice.objects.get()
    assert invoice.balance_minor == 0 and Payment.objects.get().unapplied_minor == 500
    assert_ledger_ok()


def test_nothing_chosen_or_a_half_described_item_is_refused(s):
    assert "Choose at least one package" in _post(s).content.decode()
    assert (
        "description, price and income category"
        in _post(s, other_description="Mat").content.decode()
    )
    assert not Invoice.objects.exists()


def test_double_submit_sells_once(s):
    first, second = _post(s, package_0=s["template"].pk), _post(s, package_0=s["template"].pk)
    assert first.status_code == second.status_code == 302
    assert Pass.objects.count() == 1 and Payment.objects.count() == 1


# ---- sold from an appointment (its panel's "Sell a package")
# --------------------------------------


def checkout_appointment(s, patient=None):
    prac = working_practitioner(s["cat"]["location"])
    return book(
        s["fd"], s["cat"], prac, at("2030-01-07", "10:00"), patients=[patient or s["patient"]]
    )


def _live(appointment):
    return visit_redemption(appointment.visits.get())


def test_from_an_appointment_the_covering_packages_come_first_and_the_first_is_chosen(s):
    other = package_template(
        s["cat"],
        name="A yoga pack",
        price=1000,
        quantity=3,
        items=[(_other_treatment(s), 0, None, None)],
    )
    appointment = checkout_appointment(s)
    page = s["client"].get(s["url"], {"appointment": appointment.pk}).content.decode()
    assert "For " in page and "Massage 60" in page and "10:00" in page
    assert (
        f'<option value="{s["template"].pk}" selected>5 massages — $400.00 (covers this '
        "visit)</option>"
    ) in page
    assert page.index("5 massages — $400.00 (covers this visit)") < page.index(
        f"{other.name} — $10.00"
    )
    assert f'name="appointment" value="{appointment.pk}"' in page
    assert f'value="{s["cat"]["location"].pk}" selected' in page


def _other_treatment(s):
    return treatment_of(s["cat"], "individual", name="Yoga 60")


def test_sold_and_paid_from_an_appointment_the_package_covers_it_and_the_desk_is_back_on_schedule(
    s,
):
    appointment = checkout_appointment(s)
    response = _post(s, package_0=s["template"].pk, appointment=appointment.pk)
    assert response.status_code == 302
    assert response["Location"] == (
        f"{reverse('scheduling:schedule')}?location={s['cat']['location'].pk}"
        f"&date=2030-01-07&open={appointment.pk}"
    )
    sold = Pass.objects.get()
    live = _live(appointment)
    assert live.sold_pass_id == sold.pk and live.status == "reserved"
    sold.refresh_from_db()
    assert sold.reserved_count == 1
    page = s["client"].get(response["Location"]).content.decode()
    assert "5 massages now covers the appointment." in page
    assert_ledger_ok()


def test_sold_from_an_appointment_but_not_paid_the_sale_stands_and_says_why_it_is_not_applied(s):
    appointment = checkout_appointment(s)
    response = _post(s, package_0=s["template"].pk, appointment=appointment.pk, method="later")
    assert response.status_code == 302 and Pass.objects.count() == 1
    assert _live(appointment) is None
    page = s["client"].get(response["Location"]).content.decode()
    assert "Not applied to the appointment: 5 massages: Not paid yet" in page


def test_a_visit_already_covered_keeps_its_package(s):
    appointment = checkout_appointment(s)
    first = sold_package(s["fd"], s["patient"], s["template"])

    pass_attach(actor=s["fd"].user, visit=appointment.visits.get(), sold_pass=first)
    response = _post(s, package_0=s["template"].pk, appointment=appointment.pk)
    assert response.status_code == 302 and _live(appointment).sold_pass_id == first.pk
    page = s["client"].get(response["Location"]).content.decode()
    assert "the visit was already covered by 5 massages" in page


def test_an_appointment_of_someone_else_or_none_is_refused(s):
    # (Selling needs Front Desk, which sees every location's schedule: no out-of-scope case here.)
    theirs = checkout_appointment(s, patient=make_patient())
    assert s["client"].get(s["url"], {"appointment": theirs.pk}).status_code == 404
    assert s["client"].get(s["url"], {"appointment": "x"}).status_code == 404
    assert s["client"].get(s["url"], {"appointment": 999999}).status_code == 404
    response = _post(s, package_0=s["template"].pk, appointment=theirs.pk)
    assert response.status_code == 404 and not Pass.objects.exists()


# ---- cards and split payment in the same step (issue 20 point 1)
# -----------------------------------

NEW_CARD = {"holder": "Rosalind Achebe", "exp_month": 12, "exp_year": 2040, "cvc": "123"}


def test_a_new_card_through_the_gateways_form_pays_the_sale_once(s):
    response = _post(
        s, package_0=s["template"].pk, method="new_card", number="4242 4242 4242 4242", **NEW_CARD
    )
    assert response.status_code == 302
    payment = Payment.objects.get()
    assert payment.method == Payment.Method.CARD_GATEWAY and payment.amount_minor == 40000
    assert Invoice.objects.get().balance_minor == 0 and pass_unlocked(Pass.objects.get()) == 5
    assert "Visa •••• 4242" in payment.reference
    again = _post(
        s, package_0=s["template"].pk, method="new_card", number="4242 4242 4242 4242", **NEW_CARD
    )
    assert (
        again.status_code == 302
        and Payment.objects.count() == 1
        and CardAttempt.objects.count() == 1
    )
    assert_ledger_ok()


def test_a_card_on_file_pays_the_rest_after_cash_split_across_methods(s):
    card = card_store(
        actor=s["fd"].user,
        patient=s["patient"],
        number="4242424242424242",
        exp_month=1,
        exp_year=2040,
        cvc="123",
        holder="R A",
    )
    page = s["client"].get(s["url"]).content.decode()
    assert "Visa •••• 4242 (01/2040)" in page and "Also paid by" in page
    _post(
        s,
        package_0=s["template"].pk,
        product_0=s["oil"].pk,
        method="card_gateway",
        card=card.pk,
        method_2="cash",
        amount_2="100.00",
    )
    cash, charged = Payment.objects.order_by("pk")
    assert (cash.method, cash.amount_minor) == ("cash", 10000)
    assert (charged.method, charged.amount_minor, charged.card_id) == (
        "card_gateway",
        32500,
        card.pk,
    )
    assert all(i.balance_minor == 0 for i in Invoice.objects.all())
    assert_ledger_ok()


def test_a_declined_card_keeps_the_sale_owing_and_says_so(s):
    response = _post(
        s, package_0=s["template"].pk, method="new_card", number="4000 0000 0000 0002", **NEW_CARD
    )
    assert (
        response.status_code == 302 and Pass.objects.count() == 1 and not Payment.objects.exists()
    )
    page = s["client"].get(response["Location"]).content.decode()
    assert (
        "the card payment of $400.00 did not go through" in page
        and "$400.00 is still owing" in page
    )


def test_a_bad_card_number_or_missing_card_sells_nothing(s):
    page = _post(
        s, package_0=s["template"].pk, method="new_card", number="1234", **NEW_CARD
    ).content.decode()
    assert 'class="error"' in page and not Pass.objects.exists() and not Invoice.objects.exists()
    page = _post(s, package_0=s["template"].pk, method="new_card", form_key="k2").content.decode()
    assert "Needed for a new card." in page
    page = _post(
        s, package_0=s["template"].pk, method="card_gateway", form_key="k3"
    ).content.decode()
    assert "Choose the card on file to charge." in page and not Pass.objects.exists()
    page = _post(s, package_0=s["template"].pk, method_2="debit", form_key="k4").content.decode()
    assert "Enter how much is paid this second way." in page


def test_overpaying_across_methods_asks_about_credit_first(s):
    page = _post(
        s, package_0=s["template"].pk, amount="400.00", method_2="debit", amount_2="50.00"
    ).content.decode()
    assert "Record $50.00 as credit?" in page and not Pass.objects.exists()


def test_a_new_card_sale_from_an_appointment_covers_it_once_charged(s):
    appointment = checkout_appointment(s)
    response = _post(
        s,
        package_0=s["template"].pk,
        appointment=appointment.pk,
        method="new_card",
        number="4242424242424242",
        **NEW_CARD,
    )
    assert response.status_code == 302 and f"open={appointment.pk}" in response["Location"]
    assert _live(appointment).sold_pass_id == Pass.objects.get().pk
    assert (
        "5 massages now covers the appointment."
        in s["client"].get(response["Location"]).content.decode()
    )


# ---- memberships and gift cards on the same purchase (issue 20 point 1)
# -----------------------------


def _membership(s, **fields):
    return membership_template(s["cat"], name="Wellness monthly", price=6000, **fields)


def test_a_package_a_membership_and_a_gift_card_sold_and_paid_in_cash_in_one_step(s):
    monthly = _membership(s)
    response = _post(
        s,
        package_0=s["template"].pk,
        membership=monthly.pk,
        membership_payment="manual",
        new_gift_card_amount="50.00",
        new_gift_card_recipient="Ada Lovelace",
        new_gift_card_email="ada@example.test",
    )
    assert response.status_code == 302
    package, membership = Pass.objects.order_by("pk")
    assert (package.kind, membership.kind, membership.payment_mode) == (
        "package",
        "membership",
        "manual",
    )
    assert membership.location == s["cat"]["location"]
    invoices = Invoice.objects.order_by("pk")
    assert [i.total_minor for i in invoices] == [40000, 6000] and all(
        i.balance_minor == 0 for i in invoices
    )
    card = GiftCard.objects.get()
    assert (card.balance_minor, card.recipient_name, card.purchaser_id) == (
        5000,
        "Ada Lovelace",
        s["patient"].pk,
    )
    payment = Payment.objects.get()  # one payment: the invoices and the gift card
    assert (payment.amount_minor, payment.gift_card_minor, payment.unapplied_minor) == (
        51000,
        5000,
        0,
    )
    page = s["client"].get(response["Location"]).content.decode()
    assert f"gift card {card.code}" in page and "$510.00 in all — paid." in page
    assert_ledger_ok()


def test_a_membership_started_later_is_sold_with_nothing_due_now(s):
    monthly = _membership(s)
    _post(s, membership=monthly.pk, membership_start="2099-01-01", method="later")
    sold = Pass.objects.get()
    assert sold.start_date.isoformat() == "2099-01-01" and not Invoice.objects.exists()


def test_a_membership_paid_automatically_by_a_new_card_keeps_the_card_on_file_pays_its_first_cycle(
    s,
):
    monthly = _membership(s)
    response = _post(
        s,
        package_0=s["template"].pk,
        membership=monthly.pk,
        membership_payment="automatic",
        method="new_card",
        number="4242 4242 4242 4242",
        **NEW_CARD,
    )
    assert response.status_code == 302
    kept = CardOnFile.objects.get(patient=s["patient"])
    membership = Pass.objects.get(kind="membership")
    assert (membership.payment_mode, membership.card_id) == ("automatic", kept.pk)
    payment = Payment.objects.get()
    assert (payment.method, payment.amount_minor, payment.card_id) == (
        "card_gateway",
        46000,
        kept.pk,
    )
    assert all(i.balance_minor == 0 for i in Invoice.objects.all())

    assert not pass_charge_due(
        sold_pass=membership
    ).charged  # the cycle is paid: the job charges nothing more
    assert Payment.objects.count() == 1
    assert_ledger_ok()


def test_automatic_membership_needs_a_card(s):
    page = _post(s, membership=_membership(s).pk, membership_payment="automatic").content.decode()
    assert "Automatic payment charges a card" in page and not Pass.objects.exists()


def test_a_gift_card_and_a_package_paid_by_a_new_card_in_one_charge(s):
    response = _post(
        s,
        package_0=s["template"].pk,
        new_gift_card_amount="25.00",
        new_gift_card_code="GIFT-CHECKOUT-1",
        method="new_card",
        number="4242 4242 4242 4242",
        **NEW_CARD,
    )
    assert response.status_code == 302, re.findall(
        r"error[^<]*<[^<]*|alert.{0,400}", response.content.decode(), re.S
    )
    card = GiftCard.objects.get()
    assert (card.code, card.balance_minor) == ("GIFT-CHECKOUT-1", 2500)
    payment = Payment.objects.get()
    assert (payment.amount_minor, payment.gift_card_minor, payment.unapplied_minor) == (
        42500,
        2500,
        0,
    )
    assert CardAttempt.objects.get().message == "" and Invoice.objects.get().balance_minor == 0
    again = _post(
        s,
        package_0=s["template"].pk,
        new_gift_card_amount="25.00",
        new_gift_card_code="GIFT-CHECKOUT-1",
        method="new_card",
        number="4242 4242 4242 4242",
        **NEW_CARD,
    )
    assert (
        again.status_code == 302 and Payment.objects.count() == 1 and GiftCard.objects.count() == 1
    )
    assert_ledger_ok()


def test_a_declined_card_keeps_the_package_owing_and_sells_no_gift_card(s):
    response = _post(
        s,
        package_0=s["template"].pk,
        new_gift_card_amount="25.00",
        method="new_card",
        number="4000 0000 0000 0002",
        **NEW_CARD,
    )
    assert (
        response.status_code == 302 and Pass.objects.count() == 1 and not Payment.objects.exists()
    )
    assert not GiftCard.objects.exists() and Invoice.objects.get().balance_minor == 40000
    page = s["client"].get(response["Location"]).content.decode()
    assert (
        "did not go through" in page and "was not sold" in page and "$400.00 is still owing" in page
    )
    assert_ledger_ok()


def test_a_gift_card_must_be_paid_with_money_in_full_by_the_first_way_to_pay(s):
    page = _post(s, new_gift_card_amount="25.00", method="later").content.decode()
    assert "A gift card is paid with money" in page
    page = _post(
        s, new_gift_card_amount="25.00", product_0=s["oil"].pk, amount="10.00", form_key="k2"
    ).content.decode()
    assert "carries the gift card&#x27;s $25.00 in full" in page
    page = _post(s, new_gift_card_code="X", form_key="k3").content.decode()
    assert "Enter the gift card&#x27;s amount." in page
    page = _post(s, new_gift_card_amount="-5.00", form_key="k4").content.decode()
    assert 'class="error"' in page
    assert (
        not GiftCard.objects.exists()
        and not Invoice.objects.exists()
        and not Payment.objects.exists()
    )


def test_a_gift_card_code_already_used_sells_nothing(s):
    gift_card_create_and_load(actor=s["fd"].user, code="TAKEN-1")
    page = _post(
        s, package_0=s["template"].pk, new_gift_card_amount="25.00", new_gift_card_code="taken-1"
    ).content.decode()
    assert "already used by another gift card" in page
    assert not Pass.objects.exists() and not Payment.objects.exists()


# ---- live totals (issue 20 point 1)
# ---------------------------------------------------------------


def test_live_totals_show_each_tax_and_are_the_invoices_own_numbers(s):
    gst, pst = Tax.objects.create(name="GST", rate="5"), Tax.objects.create(name="PST", rate="7.5")
    taxed = product(s["cat"]["income_category"], price=1999, stock=10)
    taxed.taxes.set([gst, pst])
    inclusive = package_template(
        s["cat"],
        name="3 massages incl. tax",
        price=33333,
        quantity=3,
        taxes=[gst],
        tax_inclusive=True,
    )
    monthly = _membership(s, taxes=[pst])
    url = reverse("billing:purchase_totals", kwargs={"pk": s["patient"].pk})
    cart = {
        "package_0": inclusive.pk,
        "membership": monthly.pk,
        "product_0": taxed.pk,
        "quantity_0": 3,
        "new_gift_card_amount": "20.00",
    }
    html = s["client"].get(url, cart).content.decode()
    sold = _post(s, **cart)
    assert sold.status_code == 302
    invoices = list(Invoice.objects.all())
    subtotal, total = sum(i.subtotal_minor for i in invoices), sum(i.total_minor for i in invoices)

    by_tax = {
        t: sum(r.amount_minor for r in InvoiceLineTax.objects.filter(tax=t)) for t in (gst, pst)
    }

    money = clinic_get().money
    assert f'data-testid="checkout-subtotal">{money(subtotal)}<' in html
    assert f'<dt>GST (5%)</dt><dd data-testid="checkout-tax">{money(by_tax[gst])}<' in html
    assert f'<dt>PST (7.5%)</dt><dd data-testid="checkout-tax">{money(by_tax[pst])}<' in html
    assert f"<strong>{money(total + 2000)}</strong>" in html and by_tax[gst] and by_tax[pst]
    assert Payment.objects.get().amount_minor == total + 2000


def test_live_totals_follow_the_items_and_never_need_the_card(s):
    url = reverse("billing:purchase_totals", kwargs={"pk": s["patient"].pk})
    one = s["client"].get(url, {"product_0": s["oil"].pk, "quantity_0": 1}).content.decode()
    three = s["client"].get(url, {"product_0": s["oil"].pk, "quantity_0": 3}).content.decode()
    assert "<strong>$25.00</strong>" in one and "<strong>$75.00</strong>" in three
    assert "<strong>$0.00</strong>" in s["client"].get(url).content.decode()
    junk = s["client"].get(
        url,
        {
            "product_0": "x",
            "quantity_0": "-4",
            "new_gift_card_amount": "abc",
            "membership_start": "0001-01-01",
        },
    )
    assert junk.status_code == 200 and "<strong>$0.00</strong>" in junk.content.decode()
    page = s["client"].get(s["url"]).content.decode()
    assert (
        'hx-params="package_0,' in page
        and "number" not in page.split('hx-params="')[1].split('"')[0]
    )
    assert not Invoice.objects.exists()


# ---- "Add items" from an appointment's panel (issue 20 point 1)
# -----------------------------------


def test_add_items_from_the_panel_opens_the_checkout_for_that_patient_and_returns_to_the_panel(s):
    appointment = checkout_appointment(s)
    panel = (
        s["client"].get(reverse("scheduling:appointment", args=[appointment.pk])).content.decode()
    )
    link = f"{s['url']}?appointment={appointment.pk}&amp;items=1"
    assert f'href="{link}">Add items</a>' in panel
    page = s["client"].get(s["url"], {"appointment": appointment.pk, "items": 1}).content.decode()
    assert f'name="appointment" value="{appointment.pk}"' in page and s["patient"].full_name in page
    assert "5 massages — $400.00 (covers this visit)" in page
    assert "selected>5 massages" not in page  # listed first, not chosen
    response = _post(
        s, product_0=s["oil"].pk, appointment=appointment.pk, new_gift_card_amount="10.00"
    )
    assert response.status_code == 302 and f"open={appointment.pk}" in response["Location"]
    assert Invoice.objects.get().total_minor == 2500 and Payment.objects.get().amount_minor == 3500
    assert "Not applied" not in s["client"].get(response["Location"]).content.decode()


def test_a_lost_card_answer_leaves_the_gift_card_to_reconciliation_which_loads_it_once(s):
    response = _post(
        s,
        product_0=s["oil"].pk,
        new_gift_card_amount="30.00",
        method="new_card",
        number="4000 0000 0000 0770",
        **NEW_CARD,
    )
    assert response.status_code == 302 and not Payment.objects.exists()
    card = GiftCard.objects.get()
    assert card.balance_minor == 0
    assert "has no answer yet" in s["client"].get(response["Location"]).content.decode()
    for _ in range(2):
        card_attempts.attempts_reconcile(older_than=dt.timedelta(0))
    card.refresh_from_db()
    payment = Payment.objects.get()
    assert (
        card.balance_minor,
        payment.amount_minor,
        payment.gift_card_minor,
        payment.unapplied_minor,
    ) == (3000, 5500, 3000, 0)
    assert Invoice.objects.get().balance_minor == 0
    assert_ledger_ok()


def test_a_card_amount_too_small_for_the_gift_card_sells_nothing_before_any_charge(s):
    page = _post(
        s,
        package_0=s["template"].pk,
        new_gift_card_amount="25.00",
        amount="10.00",
        method="new_card",
        number="4242 4242 4242 4242",
        **NEW_CARD,
    ).content.decode()
    assert "carries the gift card&#x27;s $25.00 in full" in page
    assert (
        not GiftCard.objects.exists()
        and not Pass.objects.exists()
        and not CardAttempt.objects.exists()
    )


def test_live_totals_of_a_membership_count_its_past_cycles_and_refuse_what_the_sale_would(s):
    monthly = _membership(s)
    url = reverse("billing:purchase_totals", kwargs={"pk": s["patient"].pk})
    today = clock.today(clinic_get().time_zone)
    start = today.replace(day=1) - dt.timedelta(
        days=40
    )  # three cycles begun by today (two or three months back)
    html = (
        s["client"]
        .get(url, {"membership": monthly.pk, "membership_start": start.isoformat()})
        .content.decode()
    )
    _post(s, membership=monthly.pk, membership_start=start.isoformat())
    total = sum(i.total_minor for i in Invoice.objects.all())
    assert total >= 12000 and f"<strong>{clinic_get().money(total)}</strong>" in html
    old = (
        s["client"]
        .get(url, {"membership": monthly.pk, "membership_start": "2000-01-01"})
        .content.decode()
    )
    assert "at most a year ago" in old and "<strong>" not in old
