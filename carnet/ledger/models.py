"""The double-entry ledger (SPEC 3.5). Written only by services.transaction_post/_reverse.

A posting's amount is signed: + is a debit, - a credit, so "a transaction balances" is
simply "its postings sum to zero" (checked by the service and, on PostgreSQL, a trigger).
"""

from django.db import models

from . import accounts


class Account(models.Model):
    code = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=[(t, t.title()) for t in accounts.TYPES])

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code


class JournalTransaction(models.Model):
    at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=64)  # a machine word: "invoice_issued", "payment_received"
    # The source document as label_lower + pk: a generic reference, since the ledger imports no app.
    source_type = models.CharField(max_length=100, blank=True)
    source_id = models.CharField(max_length=64, blank=True)
    memo = models.TextField(blank=True)
    # One-to-one: a transaction is reversed at most once, even under a race.
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )

    class Meta:
        indexes = [models.Index(fields=["source_type", "source_id"], name="ledger_txn_source_idx")]

    def __str__(self):
        return f"#{self.pk} {self.kind} {self.at:%Y-%m-%d}"


class Posting(models.Model):
    transaction = models.ForeignKey(
        JournalTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings")
    # The A/R and patient-credit sub-ledger. No foreign key: the ledger must not import people.
    patient_id = models.BigIntegerField(null=True, blank=True)
    amount = models.BigIntegerField()  # minor units: + debit, - credit

    class Meta:
        indexes = [
            models.Index(fields=["account", "patient_id"], name="ledger_posting_acct_pat_idx"),
            # The liability guard reads an account's postings since its checkpoint.
            models.Index(fields=["account", "id"], name="ledger_posting_acct_id_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_posting_not_zero")
        ]

    def __str__(self):
        return f"{self.account_id} {self.amount:+d}"

    @property
    def debit(self) -> int:
        return max(self.amount, 0)

    @property
    def credit(self) -> int:
        return max(-self.amount, 0)


class BalanceCheckpoint(models.Model):
    """A clinic-wide account's balance through one posting: the sum of the amounts of its postings
    with id <= through_posting_id. Postings never change (append-only), so the posting service's
    liability guard reads this row plus the few postings since, never the account's whole history.
    Derived data: advanced by services.balance_checkpoints_advance, checked by an invariant."""

    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="checkpoint")
    through_posting_id = models.BigIntegerField()
    amount = models.BigIntegerField()  # + debit, - credit, like Posting.amount
    at = models.DateTimeField()

    def __str__(self):
        return f"{self.account_id} through posting {self.through_posting_id}: {self.amount:+d}"
