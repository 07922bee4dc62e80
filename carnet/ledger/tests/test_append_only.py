import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from carnet.ledger import accounts as acc
from carnet.ledger.models import Account, JournalTransaction, Posting
from carnet.ledger.services import Line, transaction_post


def post():
    return transaction_post(
        kind="invoice_issued",
        lines=[Line(acc.AR, debit=500, patient_id=1), Line(acc.revenue(1), credit=500)],
    )


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_posting SET amount = amount + 1 WHERE transaction_id = %s",
        "UPDATE ledger_posting SET patient_id = 2 WHERE transaction_id = %s",
        "DELETE FROM ledger_posting WHERE transaction_id = %s",
    ],
)
def test_the_database_refuses_to_change_or_delete_a_posting(db, sql):
    txn = post()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(sql, [txn.pk])
    assert sorted(Posting.objects.values_list("amount", flat=True)) == [-500, 500]


def test_the_orm_is_refused_too(db):
    post()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        Posting.objects.update(amount=1)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        Posting.objects.all().delete()
    assert Posting.objects.count() == 2


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the balance trigger is PostgreSQL-only"
)
@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_an_unbalanced_transaction_at_commit():
    post()  # creates the accounts
    ar, revenue = (Account.objects.get(code=c).pk for c in (acc.AR, acc.revenue(1)))
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            raw(
                "INSERT INTO ledger_journaltransaction (at, kind, source_type, source_id, memo) "
                "VALUES (now(), 'forged', '', '', '')"
            )
            txn_id = JournalTransaction.objects.get(kind="forged").pk
            raw(
                "INSERT INTO ledger_posting (transaction_id, account_id, patient_id, "
                "amount) VALUES (%s, %s, 1, 500), (%s, %s, NULL, -400)",
                [txn_id, ar, txn_id, revenue],
            )
            # Still inside the transaction: the check waits for commit.
    assert not JournalTransaction.objects.filter(kind="forged").exists()
    assert Posting.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_ledger_and_keeps_the_guards():
    # Transactional tests end with a flush; on SQLite that is a DELETE the triggers would refuse.
    post()
    call_command("flush", interactive=False, verbosity=0)
    assert not Posting.objects.exists() and not JournalTransaction.objects.exists()
    txn = post()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw("DELETE FROM ledger_posting WHERE transaction_id = %s", [txn.pk])


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_journaltransaction SET memo = 'rewritten' WHERE id = %s",
        "UPDATE ledger_journaltransaction SET kind = 'other', source_id = '9' WHERE id = %s",
        "UPDATE ledger_journaltransaction SET at = at WHERE id = %s",
        "DELETE FROM ledger_journaltransaction WHERE id = %s",
    ],
)
def test_journal_transactions_are_append_only(db, sql):
    """Issue 17: a transaction's date, kind, memo and source are as fixed as its postings."""
    txn = post()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw(sql, [txn.pk])
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        JournalTransaction.objects.filter(pk=txn.pk).update(memo="through the ORM")
    assert JournalTransaction.objects.get(pk=txn.pk).memo == txn.memo


@pytest.mark.django_db(transaction=True)
def test_flush_keeps_the_journal_transaction_guards():
    post()
    call_command("flush", interactive=False, verbosity=0)
    txn = post()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        raw("DELETE FROM ledger_journaltransaction WHERE id = %s", [txn.pk])
