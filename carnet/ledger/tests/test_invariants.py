import pytest
from django.db import connection, transaction

from carnet.core import clock
from carnet.ledger import accounts as acc
from carnet.ledger import invariants
from carnet.ledger.models import Account, JournalTransaction
from carnet.ledger.services import Line, transaction_post

LEDGER_OWN = ["transactions balance", "liabilities not negative", "accounts have a known type"]


@pytest.fixture
def temporary():
    """Names registered in a test, unregistered after it."""
    names = []
    yield names
    for name in names:
        invariants.registry.pop(name, None)


def test_a_clean_ledger_passes_the_ledgers_own_invariants(db):
    transaction_post(
        kind="payment_received",
        lines=[
            Line(acc.cash("cash"), debit=500),
            Line(acc.PATIENT_CREDIT, credit=500, patient_id=1),
        ],
    )
    results = invariants.run_all()
    assert {name: results[name] for name in LEDGER_OWN} == dict.fromkeys(LEDGER_OWN, [])


def test_an_unbalanced_transaction_is_named(db):
    transaction_post(
        kind="invoice_issued",
        lines=[Line(acc.AR, debit=500, patient_id=1), Line(acc.revenue(1), credit=500)],
    )
    account_id = Account.objects.get(code=acc.AR).pk
    # Simulate damage done outside the service. The savepoint is rolled back so that
    # PostgreSQL's deferred balance trigger never sees it.
    with transaction.atomic():
        empty = JournalTransaction.objects.create(at=clock.now(), kind="damaged")
        lopsided = JournalTransaction.objects.create(at=clock.now(), kind="damaged")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_posting (transaction_id, account_id, amount) VALUES (%s, "
                "%s, 70)",
                [lopsided.pk, account_id],
            )
        problems = invariants.run_all()["transactions balance"]
        transaction.set_rollback(True)
    assert problems == [
        f"journal transaction #{empty.pk} (damaged) has no postings",
        f"journal transaction #{lopsided.pk} (damaged) postings sum to 70",
    ]


def test_a_negative_liability_is_named_per_account_and_per_patient(db, monkeypatch):
    # Damage the posting service's guard would refuse (test_liability_guard),
    # made as if from outside it.
    from carnet.ledger import services

    monkeypatch.setattr(services, "_guard_refuse", lambda *args: None)
    transaction_post(
        kind="refund",
        lines=[
            Line(acc.PATIENT_CREDIT, debit=300, patient_id=4),
            Line(acc.cash("cash"), credit=300),
        ],
    )
    transaction_post(
        kind="payment_received",
        lines=[
            Line(acc.cash("cash"), debit=100),
            Line(acc.PATIENT_CREDIT, credit=100, patient_id=5),
        ],
    )
    assert invariants.run_all()["liabilities not negative"] == [
        "patient_credit: -200",
        "patient_credit patient 4: -300",
    ]


def test_accounts_of_an_unknown_or_wrong_type_are_named(db):
    Account.objects.create(code=acc.AR, name="A/R", type=acc.LIABILITY)
    Account.objects.create(code="bogus", name="?", type=acc.ASSET)
    assert invariants.run_all()["accounts have a known type"] == [
        "account accounts_receivable has type 'liability', expected 'asset'",
        "account bogus is not in the chart of accounts (type 'asset')",
    ]


def test_other_apps_register_checks_by_name(db, temporary):
    temporary += ["test: always broken", "test: crashes"]

    @invariants.invariant("test: always broken")
    def broken():
        return ["thing #1"]

    @invariants.invariant("test: crashes")
    def crashes():
        raise RuntimeError("boom")

    results = invariants.run_all()
    assert results["test: always broken"] == ["thing #1"]
    assert results["test: crashes"] == ["the check itself failed: RuntimeError('boom')"]
    broken_again = invariants.invariant("test: always broken")(broken)  # a re-import is harmless
    assert broken_again is broken
    with pytest.raises(ValueError):
        invariants.invariant("test: always broken")(lambda: [])
