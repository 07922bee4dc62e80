"""Reading the ledger: balances in each account's normal direction."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet, Sum

from . import accounts
from .models import Account, Posting


def _sign(code: str) -> int:
    try:
        account_type = accounts.describe(code)[0]
    except ValueError:
        # Not in the chart. Such a row should not exist (an invariant flags it),
        # but if it does, read it.
        account_type = Account.objects.filter(code=code).values_list("type", flat=True).first()
        if account_type is None:
            raise
    return accounts.normal_sign(account_type)


def balance(
    account: str, *, patient_id: int | None = None, as_of: dt.datetime | None = None
) -> int:
    """Assets and expenses: debits - credits; liabilities, revenue, equity: credits - debits.

    patient_id=None sums all patients; as_of includes transactions at or before that instant.
    An account never posted to has balance 0.
    """
    postings = Posting.objects.filter(account__code=account)
    if patient_id is not None:
        postings = postings.filter(patient_id=patient_id)
    if as_of is not None:
        postings = postings.filter(transaction__at__lte=as_of)
    total = postings.aggregate(total=Sum("amount"))["total"] or 0
    return _sign(account) * int(total)  # int(): PostgreSQL sums bigints as numeric


def balances_by_patient(account: str) -> dict[int, int]:
    """patient_id -> balance (normal direction). Patients whose balance is 0 are left out."""
    sign = _sign(account)
    rows = (
        Posting.objects.filter(account__code=account, patient_id__isnull=False)
        .values("patient_id")
        .annotate(total=Sum("amount"))
        .order_by("patient_id")
    )
    return {row["patient_id"]: sign * int(row["total"]) for row in rows if row["total"]}


def postings_for_source(source) -> QuerySet:
    """Postings of every journal transaction (reversals included) whose source is `source`."""
    if getattr(source, "pk", None) is None:
        raise ValueError("postings_for_source needs a saved model instance")
    return (
        Posting.objects.filter(
            transaction__source_type=source._meta.label_lower, transaction__source_id=str(source.pk)
        )
        .select_related("account", "transaction")
        .order_by("transaction_id", "pk")
    )
