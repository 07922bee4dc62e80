"""Invariants: named checks that must always hold, each yielding the records that break it.

A registry, so billing, passes and gift cards add their own checks (in their own
`invariants` module) without the ledger importing them; `discover()` imports those modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db.models import Count, Q, Sum
from django.utils.module_loading import autodiscover_modules

from . import accounts
from .models import Account, BalanceCheckpoint, JournalTransaction, Posting

Check = Callable[[], Iterable[str]]
registry: dict[str, Check] = {}  # name -> check; tests may pop temporary entries


def invariant(name: str):
    """Register fn() -> Iterable[str] under `name`; each string names one broken record."""

    def register(fn: Check) -> Check:
        known = registry.get(name)
        # The same function registering again (a re-import) is fine;
        # two checks sharing a name is not.
        if known is not None and (known.__module__, known.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(f"Invariant {name!r} is already registered by {known.__module__}")
        registry[name] = fn
        return fn

    return register


def discover() -> None:
    """Import every installed app's `invariants` module so its checks register."""
    autodiscover_modules("invariants")


def run_all() -> dict[str, list[str]]:
    """name -> problems (an empty list when the invariant holds)."""
    results = {}
    for name, check in registry.items():
        try:
            results[name] = [str(problem) for problem in check()]
        except Exception as exc:  # a crashing check is a failure to report, not a reason to stop
            results[name] = [f"the check itself failed: {exc!r}"]
    return results


# ---------------------------------------------------------------- the ledger's own


@invariant("transactions balance")
def _transactions_balance():
    broken = (
        JournalTransaction.objects.annotate(total=Sum("postings__amount"), n=Count("postings"))
        .filter(Q(n=0) | ~Q(total=0))
        .order_by("pk")
    )
    for txn in broken:
        yield (
            f"journal transaction #{txn.pk} ({txn.kind}) has no postings"
            if not txn.n
            else f"journal transaction #{txn.pk} ({txn.kind}) postings sum to {txn.total}"
        )


@invariant("liabilities not negative")
def _liabilities_not_negative():
    liability = Posting.objects.filter(account__type=accounts.LIABILITY).order_by()
    for row in (
        liability.values("account__code").annotate(total=Sum("amount")).order_by("account__code")
    ):
        if row["total"] > 0:  # a liability's balance is credits - debits, i.e. -sum(amount)
            yield f"{row['account__code']}: {-row['total']}"
    per_patient = (
        liability.filter(account__code=accounts.PATIENT_CREDIT, patient_id__isnull=False)
        .values("patient_id")
        .annotate(total=Sum("amount"))
        .order_by("patient_id")
    )
    for row in per_patient:
        if row["total"] > 0:
            yield f"{accounts.PATIENT_CREDIT} patient {row['patient_id']}: {-row['total']}"


@invariant("accounts have a known type")
def _accounts_have_known_type():
    for account in Account.objects.order_by("code"):
        try:
            expected = accounts.describe(account.code)[0]
        except ValueError:
            yield f"account {account.code} is not in the chart of accounts (type {account.type!r})"
            continue
        if account.type != expected:
            yield f"account {account.code} has type {account.type!r}, expected {expected!r}"


@invariant("balance checkpoints match the postings")
def _balance_checkpoints_match():
    for checkpoint in BalanceCheckpoint.objects.select_related("account").order_by("account__code"):
        total = (
            Posting.objects.filter(
                account_id=checkpoint.account_id, id__lte=checkpoint.through_posting_id
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        if int(total) != checkpoint.amount:
            yield (
                f"{checkpoint.account.code}: checkpoint through posting "
                f"{checkpoint.through_posting_id} says {checkpoint.amount}, the postings sum to "
                f"{total}"
            )
