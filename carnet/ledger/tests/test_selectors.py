import datetime as dt

import pytest
from django.contrib.auth import get_user_model

from carnet.core import clock
from carnet.ledger import accounts as acc
from carnet.ledger.selectors import balance, balances_by_patient, postings_for_source
from carnet.ledger.services import Line, transaction_post, transaction_reverse

DAY1 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)
P1, P2 = 11, 22


@pytest.fixture
def ledger(db):
    """Some of SPEC 3.5's example postings, for two patients over two days."""
    cash = acc.cash("cash")
    with clock.frozen(DAY1):
        # invoice a visit 100 to P1; sell a package 900 to P2
        transaction_post(
            kind="invoice_issued",
            lines=[Line(acc.AR, debit=10000, patient_id=P1), Line(acc.revenue(3), credit=10000)],
        )
        transaction_post(
            kind="invoice_issued",
            lines=[
                Line(acc.AR, debit=90000, patient_id=P2),
                Line(acc.DEFERRED_PACKAGES, credit=90000),
            ],
        )
    with clock.frozen(DAY2):
        # P2 pays 900 and it is applied; P1 pays 50 left unapplied
        transaction_post(
            kind="payment_received",
            lines=[Line(cash, debit=90000), Line(acc.AR, credit=90000, patient_id=P2)],
        )
        transaction_post(
            kind="payment_received",
            lines=[Line(cash, debit=5000), Line(acc.PATIENT_CREDIT, credit=5000, patient_id=P1)],
        )


def test_balances_are_in_each_accounts_normal_direction(ledger):
    assert balance(acc.cash("cash")) == 95000  # asset: debits - credits
    assert balance(acc.AR) == 10000
    assert balance(acc.PATIENT_CREDIT) == 5000  # liability: credits - debits
    assert balance(acc.DEFERRED_PACKAGES) == 90000
    assert balance(acc.revenue(3)) == 10000  # revenue: credits - debits
    assert balance(acc.GIFT_CARD_LIABILITY) == 0  # never posted to


def test_balances_per_patient(ledger):
    assert balance(acc.AR, patient_id=P1) == 10000
    assert balance(acc.AR, patient_id=P2) == 0
    assert balance(acc.PATIENT_CREDIT, patient_id=P1) == 5000
    assert balances_by_patient(acc.AR) == {P1: 10000}  # P2's zero balance is left out
    assert balances_by_patient(acc.PATIENT_CREDIT) == {P1: 5000}
    assert balances_by_patient(acc.GIFT_CARD_LIABILITY) == {}


def test_balance_as_of_an_instant(ledger):
    assert balance(acc.AR, as_of=DAY1) == 100000
    assert balance(acc.AR, patient_id=P2, as_of=DAY1) == 90000
    assert balance(acc.cash("cash"), as_of=DAY1) == 0
    assert balance(acc.AR, as_of=DAY1 - dt.timedelta(seconds=1)) == 0


def test_balance_of_a_code_outside_the_chart_is_refused(db):
    with pytest.raises(ValueError):
        balance("bogus")


def test_postings_for_source_include_reversals_and_nothing_else(db):
    users = get_user_model().objects
    doc, other = users.create(username="doc"), users.create(username="other")
    lines = [Line(acc.AR, debit=500, patient_id=P1), Line(acc.revenue(3), credit=500)]
    txn = transaction_post(lines=lines, kind="invoice_issued", source=doc)
    transaction_post(lines=lines, kind="invoice_issued", source=other)
    transaction_reverse(txn=txn, memo="void")
    amounts = list(postings_for_source(doc).values_list("account__code", "amount"))
    assert amounts == [(acc.AR, 500), ("revenue:3", -500), (acc.AR, -500), ("revenue:3", 500)]
    with pytest.raises(ValueError):
        postings_for_source(users.model(username="unsaved"))
