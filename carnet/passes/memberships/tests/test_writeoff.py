"""Skip instead of stacking (issue 22 point 5): with the clinic's setting on, a cycle whose last
retry failed is written off — no benefits, no back-charge — and the ledger reverses its invoice
with one new balanced transaction (deferred revenue – memberships and A/R),
every invariant holding."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_patient
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.ledger import accounts
from carnet.ledger.models import JournalTransaction, Posting
from carnet.ledger.selectors import balance
from carnet.passes.dunning import cycle_state
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as memberships
from carnet.passes.memberships.writeoff import cycle_write_off
from carnet.passes.models import PassInvoice
from carnet.passes.redeeming.redemption import explain
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

MAY_1, MAY_2 = dt.date(2026, 5, 1), dt.date(2026, 5, 2)


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto", dunning_write_off=True, dunning_retry_days="1")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {"fd": front_desk, "admin": admin_staff, "cat": catalog}


def _automatic(s, number="4000000000009995"):
    patient = make_patient()
    card = card_store(
        actor=s["fd"].user,
        patient=patient,
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="P",
    )
    return memberships.membership_sell(
        actor=s["fd"].user,
        patient=patient,
        template=membership_template(s["cat"]),
        payment_mode="automatic",
        card=card,
    )


def _row(sold, seq=1):
    return PassInvoice.objects.select_related("invoice").get(sold_pass=sold, seq=seq)


def _snapshot():
    return list(Posting.objects.order_by("pk").values_list("pk", "account_id", "amount"))


def test_the_last_failed_retry_writes_the_cycle_off_and_reverses_its_invoice_cleanly(s):
    clinic_set(dunning_retry_days="3")
    sold = _automatic(s)
    passes_daily(today=MAY_1)
    assert _row(sold).next_attempt_on == dt.date(2026, 5, 4)
    assert balance(accounts.AR, patient_id=sold.patient_id) == 6000
    passes_daily(today=dt.date(2026, 5, 3))  # two days of the cycle's fee are recognised meanwhile
    revenue = accounts.revenue(s["cat"]["income_category"].pk)
    assert balance(revenue) == 6000 * 2 // 31
    before = _snapshot()
    passes_daily(today=dt.date(2026, 5, 4))  # the last retry: declined, then written off
    row = _row(sold)
    assert row.written_off_at is not None and row.next_attempt_on is None
    assert cycle_state(row, today=MAY_2).label == "Written off"
    assert row.invoice.balance_minor == 0 and row.invoice.total_minor == 0  # no back-charge
    assert row.uses_allowed == row.used_count  # no benefits left in it
    assert balance(accounts.AR, patient_id=sold.patient_id) == 0
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 0
    assert balance(revenue) == 0  # the days recognised are taken back
    assert _snapshot()[: len(before)] == before  # append-only: nothing earlier changed
    reversal = JournalTransaction.objects.filter(kind="pass_taken_back").get()
    assert "written off" in reversal.memo
    sold.refresh_from_db()
    assert sold.past_due_since is None  # nothing owed any more
    assert passes_daily(today=dt.date(2026, 5, 5))["declined"] == 0  # never charged again
    assert TestGatewayCharge.objects.count() == 0
    assert_ledger_ok()


def test_a_written_off_cycle_covers_no_visits_and_the_next_cycle_bills_one_cycle_only(s):
    sold = _automatic(s)
    passes_daily(today=MAY_1)
    passes_daily(today=MAY_2)
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=practitioner(s["cat"]["location"]),
        location=s["cat"]["location"],
        start=at("2026-05-20", "09:00"),
        patients=[sold.patient],
        pass_choice=None,
    )
    [entry] = explain(appointment.visits.get())
    assert entry["code"] == "written_off" and "written off" in entry["message"]
    passes_daily(today=dt.date(2026, 6, 1))
    june = _row(sold, 2)
    assert june.invoice.total_minor == 6000 and june.written_off_at is None  # not stacked on May's
    assert balance(accounts.AR, patient_id=sold.patient_id) == 6000
    assert_ledger_ok()


def test_without_the_setting_the_cycle_stays_owed(s):
    clinic_set(dunning_write_off=False)
    sold = _automatic(s)
    passes_daily(today=MAY_1)
    passes_daily(today=MAY_2)
    row = _row(sold)
    assert row.written_off_at is None and row.invoice.balance_minor == 6000
    assert cycle_state(row, today=MAY_2).label == "Past due"


def test_staff_write_off_needs_the_refund_right_is_done_once_and_refuses_a_paid_cycle(s):
    clinic_set(dunning_write_off=False)
    sold = _automatic(s)
    passes_daily(today=MAY_1)
    passes_daily(today=MAY_2)
    with pytest.raises(NotAllowed):
        cycle_write_off(actor=s["fd"].user, row=_row(sold))  # front desk: no refund right
    cycle_write_off(actor=s["admin"].user, row=_row(sold), reason="Agreed with the patient")
    cycle_write_off(actor=s["admin"].user, row=_row(sold))  # a second click: nothing more
    assert JournalTransaction.objects.filter(kind="pass_taken_back").count() == 1
    good = _automatic(s, "4242424242424242")
    passes_daily(today=MAY_2)
    with pytest.raises(Conflict):
        cycle_write_off(actor=s["admin"].user, row=_row(good))
    assert_ledger_ok()


def test_write_off_through_the_api_and_the_page_once(s, client):
    clinic_set(dunning_write_off=False)
    first, second = _automatic(s), _automatic(s)
    passes_daily(today=MAY_1)
    passes_daily(today=MAY_2)
    api = Api(s["admin"].user)
    path = f"/pass-invoices/{_row(first).pk}/write-off"
    headers = {"Idempotency-Key": "wo-1"}
    answer = api.post(path, {"reason": "Agreed"}, **headers)
    assert answer.status_code == 200, answer.content
    assert answer.json()["cycles"][0]["billing_state"] == "written_off"
    assert api.post(path, {"reason": "Agreed"}, **headers).json() == answer.json()  # a replay
    assert (
        Api(s["fd"].user).post(f"/pass-invoices/{_row(second).pk}/write-off", {}).status_code == 403
    )
    client.force_login(s["admin"].user)
    page = client.get(reverse("memberships:detail", args=[second.pk])).content.decode()
    assert ">Write off</button>" in page
    url = reverse("memberships:cycle_write_off", args=[_row(second).pk])
    client.post(url, {"form_key": "k1"})
    client.post(url, {"form_key": "k1"})  # a double click
    assert _row(second).written_off_at is not None
    assert JournalTransaction.objects.filter(kind="pass_taken_back").count() == 2
    assert_ledger_ok()
