"""Issue 17: the posting service refuses a posting that takes a liability below zero (TigerBeetle's
debits_must_not_exceed_credits), checked per patient for patient credit and from a balance
checkpoint for the clinic-wide accounts, at the cost of one read when a liability is debited."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from carnet.ledger import accounts as acc
from carnet.ledger.invariants import run_all
from carnet.ledger.models import BalanceCheckpoint, JournalTransaction, Posting
from carnet.ledger.selectors import balance
from carnet.ledger.services import (
    LiabilityOverdrawn,
    Line,
    balance_checkpoints_advance,
    transaction_post,
    transaction_reverse,
)

pytestmark = pytest.mark.django_db
CASH = acc.cash("cash")


def credit(account, amount, patient_id=None):
    return transaction_post(
        kind="loaded",
        lines=[Line(CASH, debit=amount), Line(account, credit=amount, patient_id=patient_id)],
    )


def spend(account, amount, patient_id=None):
    return transaction_post(
        kind="spent",
        lines=[
            Line(account, debit=amount, patient_id=patient_id),
            Line(acc.revenue(1), credit=amount),
        ],
    )


@pytest.mark.parametrize(
    "account",
    [acc.GIFT_CARD_LIABILITY, acc.DEFERRED_PACKAGES, acc.DEFERRED_MEMBERSHIPS, acc.tax_payable(3)],
)
def test_a_posting_that_takes_a_liability_below_zero_is_refused(account):
    credit(account, 1000)
    spend(account, 600)
    with pytest.raises(LiabilityOverdrawn, match="below zero") as refused:
        spend(account, 401)
    assert refused.value.code == "ledger_liability_negative" and refused.value.status == 409
    assert balance(account) == 400 and JournalTransaction.objects.count() == 2  # nothing recorded
    spend(account, 400)  # down to exactly zero is fine
    assert balance(account) == 0


def test_a_patients_credit_is_guarded_per_patient():
    credit(acc.PATIENT_CREDIT, 5000, patient_id=1)
    with pytest.raises(LiabilityOverdrawn, match="Patient credit for patient 2"):
        spend(
            acc.PATIENT_CREDIT, 100, patient_id=2
        )  # the account as a whole holds 50.00: not theirs
    spend(acc.PATIENT_CREDIT, 5000, patient_id=1)
    assert balance(acc.PATIENT_CREDIT) == 0 and Posting.objects.count() == 4


def test_a_reversal_that_would_take_back_spent_credit_is_refused():
    loaded = credit(acc.GIFT_CARD_LIABILITY, 1000)
    spend(acc.GIFT_CARD_LIABILITY, 700)
    with pytest.raises(LiabilityOverdrawn):
        transaction_reverse(txn=loaded, memo="card voided")
    assert not JournalTransaction.objects.filter(reverses=loaded).exists()


def test_the_guard_reads_from_the_checkpoint_and_the_postings_since():
    credit(acc.DEFERRED_PACKAGES, 1000)
    spend(acc.DEFERRED_PACKAGES, 300)
    assert balance_checkpoints_advance() == 1
    checkpoint = BalanceCheckpoint.objects.get(account__code=acc.DEFERRED_PACKAGES)
    assert (checkpoint.amount, checkpoint.through_posting_id) == (
        -700,
        Posting.objects.order_by("pk").last().pk,
    )
    assert balance_checkpoints_advance() == 0  # nothing new
    spend(acc.DEFERRED_PACKAGES, 200)
    with pytest.raises(LiabilityOverdrawn):
        spend(acc.DEFERRED_PACKAGES, 501)
    spend(acc.DEFERRED_PACKAGES, 500)
    balance_checkpoints_advance()
    assert BalanceCheckpoint.objects.get(account__code=acc.DEFERRED_PACKAGES).amount == 0
    assert run_all()["balance checkpoints match the postings"] == []


def test_a_wrong_checkpoint_is_named_by_ledger_check():
    credit(acc.GIFT_CARD_LIABILITY, 1000)
    balance_checkpoints_advance()
    BalanceCheckpoint.objects.update(amount=-5)
    [problem] = run_all()["balance checkpoints match the postings"]
    assert "says -5, the postings sum to -1000" in problem


def test_the_guard_costs_one_read_and_only_when_a_liability_is_debited():
    credit(acc.DEFERRED_PACKAGES, 1000)
    spend(
        acc.DEFERRED_PACKAGES, 100
    )  # both create their accounts: the queries below are the steady state
    with CaptureQueriesContext(connection) as credited:
        credit(acc.DEFERRED_PACKAGES, 1000)
    with CaptureQueriesContext(connection) as debited:
        spend(acc.DEFERRED_PACKAGES, 100)
    reads = [q["sql"] for q in debited.captured_queries if "ledger_balancecheckpoint" in q["sql"]]
    assert len(reads) == 1
    assert not any("ledger_balancecheckpoint" in q["sql"] for q in credited.captured_queries)
    # PostgreSQL reads it in the postings' own insert (a WITH); SQLite in a statement after it.
    more = 0 if connection.vendor == "postgresql" else 1
    assert len(debited.captured_queries) == len(credited.captured_queries) + more
