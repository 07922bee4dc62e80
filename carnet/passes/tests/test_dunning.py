"""Dunning by decline code (issue 22 point 1): the gateways classify each decline hard or soft; a
hard one stops the retries and asks for a new card, a soft one is retried on the clinic's schedule
(counted in the clinic's days, also when the job runs just before or after midnight there); each
cycle's billing state is shown on the membership's page and in the portal."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, make_patient
from carnet.core import clock
from carnet.gateway import stripe as stripe_gateway
from carnet.gateway.base import HARD, SOFT
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import PaymentFailed, card_charge, card_store
from carnet.passes import dunning
from carnet.passes.dunning import cycle_state
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as memberships
from carnet.passes.models import CardUpdateRequest, PassInvoice
from carnet.passes.tests.factories import at, membership_template
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

MAY_1 = dt.date(2026, 5, 1)
HARD_CARDS = {
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4000000000009599": "do_not_honor",
    "4000000000009581": "account_closed",
    "4000000000000069": "expired_card",
}
SOFT_CARDS = {
    "4000000000009995": "insufficient_funds",
    "4000000000000267": "processing_error",
    "4000000000000002": "card_declined",
}


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto", email="desk@clinic.test")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {"fd": front_desk, "cat": catalog}


def _card(s, patient, number):
    return card_store(
        actor=s["fd"].user,
        patient=patient,
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="P",
    )


def _automatic(s, number):
    patient = make_patient()
    return memberships.membership_sell(
        actor=s["fd"].user,
        patient=patient,
        template=membership_template(s["cat"]),
        payment_mode="automatic",
        card=_card(s, patient, number),
    )


def _row(sold, seq=1) -> PassInvoice:
    return PassInvoice.objects.select_related("invoice").get(sold_pass=sold, seq=seq)


@pytest.mark.parametrize("number, code", list(HARD_CARDS.items()) + list(SOFT_CARDS.items()))
def test_the_test_gateway_gives_each_decline_its_code_and_kind(s, number, code):
    card = _card(s, make_patient(), number)
    with pytest.raises(PaymentFailed) as declined:
        card_charge(
            card_or_token=card, amount_minor=1000, currency="CAD", idempotency_key=f"k-{number}"
        )
    assert declined.value.decline_code == code
    assert declined.value.kind == (HARD if number in HARD_CARDS else SOFT)
    assert declined.value.message.endswith(".") and "_" not in declined.value.message


@pytest.mark.parametrize(
    "code, decline, kind",
    [
        ("card_declined", "lost_card", HARD),
        ("card_declined", "stolen_card", HARD),
        ("card_declined", "do_not_honor", HARD),
        ("card_declined", "invalid_account", HARD),
        ("expired_card", None, HARD),
        ("card_declined", "pickup_card", HARD),
        ("card_declined", "insufficient_funds", SOFT),
        ("processing_error", None, SOFT),
        ("card_declined", "generic_decline", SOFT),
        ("card_declined", "something_new", SOFT),
    ],
)
def test_stripe_decline_codes_are_classified_the_same_way(code, decline, kind):
    error = stripe_gateway.decline_error(code, decline)
    assert error.kind == kind and error.decline_code == (decline or code)
    if kind == HARD:
        assert "another card" in error.message or "current card" in error.message


@pytest.mark.parametrize("number", list(HARD_CARDS))
def test_a_hard_decline_stops_retries_at_once_and_asks_for_a_new_card(
    s, number, django_capture_on_commit_callbacks
):
    sold = _automatic(s, number)
    with django_capture_on_commit_callbacks(execute=True):
        assert passes_daily(today=MAY_1)["declined"] == 1
    row = _row(sold)
    assert (row.next_attempt_on, row.needs_new_card, row.decline_kind, row.charge_attempts) == (
        None,
        True,
        HARD,
        1,
    )
    [asked] = CardUpdateRequest.objects.filter(
        sold_pass=sold
    )  # the card update request (point 3), once
    assert asked.reason == "hard_decline" and asked.note == row.last_error
    assert cycle_state(row, today=MAY_1).code == dunning.NEW_CARD
    for day in range(2, 12):  # never tried again on that card
        assert passes_daily(today=dt.date(2026, 5, day))["declined"] == 0
    assert _row(sold).charge_attempts == 1


def test_a_new_card_resumes_the_charges_and_clears_the_request(s):
    sold = _automatic(s, "4000000000009987")
    passes_daily(today=MAY_1)
    memberships.membership_payment_set(
        actor=s["fd"].user,
        sold_pass=sold,
        payment_mode="automatic",
        card=_card(s, sold.patient, "4242424242424242"),
    )
    assert passes_daily(today=MAY_1)["charged"] == 1
    row = _row(sold)
    assert not row.needs_new_card and row.invoice.balance_minor == 0
    assert cycle_state(row, today=MAY_1).code == dunning.PAID


def test_soft_declines_follow_the_clinics_schedule_then_the_cycle_is_past_due(s):
    clinic_set(dunning_retry_days="2,5")
    sold = _automatic(s, "4000000000009995")
    passes_daily(today=MAY_1)
    row = _row(sold)
    assert (row.next_attempt_on, row.decline_kind) == (dt.date(2026, 5, 3), SOFT)
    state = cycle_state(row, today=MAY_1)
    assert (state.code, state.label) == (dunning.RETRYING, "Retrying (next on 2026-05-03)")
    assert passes_daily(today=dt.date(2026, 5, 2))["declined"] == 0  # not due a try yet
    assert passes_daily(today=dt.date(2026, 5, 3))["declined"] == 1
    assert _row(sold).next_attempt_on == dt.date(2026, 5, 8)
    assert passes_daily(today=dt.date(2026, 5, 8))["declined"] == 1
    row = _row(sold)
    assert row.next_attempt_on is None and row.charge_attempts == 3
    assert cycle_state(row, today=dt.date(2026, 5, 8)).label == "Past due"
    assert TestGatewayCharge.objects.count() == 0
    assert (
        Invoice.objects.get(pk=row.invoice_id).balance_minor == 6000
    )  # nothing written off by default
    sold.refresh_from_db()
    assert sold.past_due_since == MAY_1
    assert not sold.card_requests.exists()  # soft declines never ask for a new card


def test_the_default_schedule_is_1_3_7_days(s):
    sold = _automatic(s, "4000000000000267")
    waits = []
    day = MAY_1
    for _ in range(4):
        passes_daily(today=day)
        nxt = _row(sold).next_attempt_on
        if nxt is None:
            break
        waits.append((nxt - day).days)
        day = nxt
    assert waits == [1, 3, 7] and _row(sold).charge_attempts == 4


@pytest.mark.parametrize(
    "utc_time, expected",
    [
        (
            "03:30",
            dt.date(2026, 5, 2),
        ),  # 23:30 on 1 May in Toronto: the next try is the next Toronto day
        ("04:30", dt.date(2026, 5, 3)),  # 00:30 on 2 May in Toronto: already the 2nd there
    ],
)
def test_retry_dates_count_the_clinics_days_across_midnight(s, utc_time, expected):
    sold = _automatic(s, "4000000000009995")
    hour, minute = map(int, utc_time.split(":"))
    with clock.frozen(dt.datetime(2026, 5, 2, hour, minute, tzinfo=dt.timezone.utc)):
        passes_daily()  # no date given: "today" is the clinic's
    assert _row(sold).next_attempt_on == expected


def test_a_payment_at_the_desk_makes_the_cycle_paid(s):
    sold = _automatic(s, "4000000000009995")
    passes_daily(today=MAY_1)
    invoice = _row(sold).invoice
    payment_receive(
        actor=s["fd"].user,
        patient=sold.patient,
        method="cash",
        amount_minor=invoice.balance_minor,
        allocations=[(invoice, invoice.balance_minor)],
    )
    assert cycle_state(_row(sold), today=MAY_1).label == "Paid"
    assert passes_daily(today=dt.date(2026, 5, 2))["declined"] == 0  # paid: not charged again
    assert TestGatewayCharge.objects.count() == 0
    assert_ledger_ok()


def test_the_membership_page_and_the_portal_show_each_cycles_billing_state(s, client, owner):
    sold = _automatic(s, "4000000000009995")
    passes_daily(today=MAY_1)
    client.force_login(s["fd"].user)
    page = client.get(reverse("memberships:detail", args=[sold.pk])).content.decode()
    assert 'data-testid="billing-state">Retrying (next on 2026-05-02)' in page
    assert "1, 3, 7 days" in page
    client.logout()
    patient_portal_enable(actor=owner.user, patient=sold.patient, password=PASSWORD)
    sold.patient.refresh_from_db()
    client.force_login(sold.patient.user)
    page = client.get(reverse("portal:passes")).content.decode()
    assert "Retrying (next on 2026-05-02)" in page
