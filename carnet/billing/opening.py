"""Account credit brought in from the clinic's previous system (SPEC 15): an unapplied payment per
patient ("Opening balance"), so that it is spent, refunded and checked like any credit; its money
came in before the switch, so the ledger credits patient credit against opening balance equity."""

from __future__ import annotations

import datetime as dt

from carnet.core import activity, bulk
from carnet.core.undo import imported_rows_remove
from carnet.ledger import accounts
from carnet.ledger.services import Entry, Line, transactions_post_many

from .models import Payment

OPENING_REFERENCE = "Opening balance"


def credits_open(*, actor, amounts: list[tuple[int, int]], at: dt.datetime, memo: str) -> list[tuple[Payment, int]]:
    """(patient id, amount) -> (payment, journal transaction id), inside the caller's transaction."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    payments = bulk.insert(Payment, [
        Payment(patient_id=patient_id, method=Payment.Method.OTHER, amount_minor=amount, received_at=at,
                reference=f"{OPENING_REFERENCE} ({memo})"[:120], created_by=user)
        for patient_id, amount in amounts])
    txns = transactions_post_many([
        Entry(kind="opening_balance", source=p, at=at, memo=f"{memo}: account credit", lines=[
            Line(accounts.OPENING_BALANCE_EQUITY, debit=p.amount_minor),
            Line(accounts.PATIENT_CREDIT, credit=p.amount_minor, patient_id=p.patient_id)])
        for p in payments])
    activity.record_many(actor=actor, verb="imported", objs=payments)
    return [(p, t.pk) for p, t in zip(payments, txns)]


def credits_in_use(pks: list[int]) -> list[str]:
    problems = []
    for part in bulk.chunks(pks):
        for p in Payment.objects.filter(pk__in=part).order_by("pk"):
            if p.applied_minor or p.refunded_minor or p.gift_card_minor:
                problems.append(f"the opening credit of patient #{p.patient_id} (payment #{p.pk}) has been used")
    return problems


def credits_close(*, actor, pks: list[int]) -> None:
    """Undo imported credit (caller's transaction; the caller reverses the opening balances), refused
    with the reasons if any of it has been used."""
    imported_rows_remove(actor=actor, model=Payment, pks=pks, in_use=credits_in_use)
