"""Account credit brought in from the clinic's previous system (SPEC 15): an unapplied payment per
patient ("Opening balance"), so that it is spent, refunded and checked like any credit; its money
came in before the switch, so the ledger credits patient credit against opening balance equity."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from carnet.core import activity, bulk, clock
from carnet.core.errors import Conflict
from carnet.core.undo import imported_rows_remove
from carnet.ledger import accounts
from carnet.ledger.services import Entry, Line, transactions_post_many

from .invoicing import invoice_numbers_next
from .models import Allocation, Invoice, InvoiceLine, InvoiceLineTax, Payment

OPENING_REFERENCE = "Opening balance"
PAID_BEFORE_REFERENCE = "Paid before the switch"


def credits_open(
    *, actor, amounts: list[tuple[int, int]], at: dt.datetime, memo: str
) -> list[tuple[Payment, int]]:
    """(patient id, amount) -> (payment, journal transaction id),
    inside the caller's transaction."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    payments = bulk.insert(
        Payment,
        [
            Payment(
                patient_id=patient_id,
                method=Payment.Method.OTHER,
                amount_minor=amount,
                received_at=at,
                reference=f"{OPENING_REFERENCE} ({memo})"[:120],
                created_by=user,
            )
            for patient_id, amount in amounts
        ],
    )
    txns = transactions_post_many(
        [
            Entry(
                kind="opening_balance",
                source=p,
                at=at,
                memo=f"{memo}: account credit",
                lines=[
                    Line(accounts.OPENING_BALANCE_EQUITY, debit=p.amount_minor),
                    Line(accounts.PATIENT_CREDIT, credit=p.amount_minor, patient_id=p.patient_id),
                ],
            )
            for p in payments
        ]
    )
    activity.record_many(actor=actor, verb="imported", objs=payments)
    return [(p, t.pk) for p, t in zip(payments, txns)]


def credits_in_use(pks: list[int]) -> list[str]:
    problems = []
    for part in bulk.chunks(pks):
        for p in Payment.objects.filter(pk__in=part).order_by("pk"):
            if p.applied_minor or p.refunded_minor or p.gift_card_minor:
                problems.append(
                    f"the opening credit of patient #{p.patient_id} (payment #{p.pk}) has been used"
                )
    return problems


def credits_close(*, actor, pks: list[int]) -> None:
    """Undo imported credit (caller's transaction; the caller reverses the opening balances),
    refused with the reasons if any of it has been used."""
    imported_rows_remove(actor=actor, model=Payment, pks=pks, in_use=credits_in_use)


@dataclass(frozen=True)
class Bill:
    """A purchase made in the previous system, billed on one invoice: what it cost (tax included),
    its part before tax, and what was paid for it there."""

    patient_id: int
    kind: str  # an InvoiceLine.Kind: package or membership
    description: str
    income_category_id: int
    total_minor: int
    net_minor: int
    paid_minor: int


def bills_open(
    *, actor, bills: list[Bill], invoice_date: dt.date, at: dt.datetime, memo: str
) -> list[Invoice]:
    """Invoices for purchases made before the switch (inside the caller's transaction), with what
    was paid then applied by a "Paid before the switch" payment. Nothing is posted here: the money
    moved in the previous system, so the caller's opening balance entry carries what is still owed
    (A/R against opening balance equity), which keeps A/R per patient equal to the invoice balances.
    The tax on them was the previous system's to remit: no tax lines."""

    if not bills:
        return []
    user = actor if getattr(actor, "is_authenticated", False) else None
    invoices = _bills_invoiced(bills, invoice_date, memo)
    _bills_paid_before(invoices, bills, at=at, memo=memo, user=user)
    activity.record_many(actor=actor, verb="imported", objs=invoices)
    return invoices


def _bills_invoiced(bills: list[Bill], invoice_date: dt.date, memo: str) -> list[Invoice]:
    """One invoice a bill, numbered in order, with its one tax-inclusive line."""
    first, now = invoice_numbers_next(len(bills)), clock.now()
    invoices = bulk.insert(
        Invoice,
        [
            Invoice(
                number=first + n,
                patient_id=b.patient_id,
                invoice_date=invoice_date,
                created_at=now,
                subtotal_minor=b.net_minor,
                tax_minor=b.total_minor - b.net_minor,
                total_minor=b.total_minor,
                applied_minor=b.paid_minor,
                notes=f"Brought in from the previous system ({memo}).",
            )
            for n, b in enumerate(bills)
        ],
    )
    bulk.insert(
        InvoiceLine,
        [
            InvoiceLine(
                invoice=i,
                kind=b.kind,
                description=b.description[:200],
                quantity=1,
                unit_price_minor=b.total_minor,
                tax_inclusive=True,
                income_category_id=b.income_category_id,
                net_minor=b.net_minor,
                tax_minor=b.total_minor - b.net_minor,
                total_minor=b.total_minor,
            )
            for i, b in zip(invoices, bills)
        ],
    )
    return invoices


def _bills_paid_before(invoices, bills: list[Bill], *, at, memo: str, user) -> None:
    """What was paid before the switch: a payment applied in full to each bill's invoice."""
    paid = [(i, b) for i, b in zip(invoices, bills) if b.paid_minor]
    payments = bulk.insert(
        Payment,
        [
            Payment(
                patient_id=b.patient_id,
                method=Payment.Method.OTHER,
                amount_minor=b.paid_minor,
                applied_minor=b.paid_minor,
                received_at=at,
                reference=f"{PAID_BEFORE_REFERENCE} ({memo})"[:120],
                created_by=user,
            )
            for _, b in paid
        ],
    )
    bulk.insert(
        Allocation,
        [
            Allocation(payment=p, invoice=i, amount_minor=p.amount_minor, applied_at=at)
            for p, (i, _) in zip(payments, paid)
        ],
    )


def bills_in_use(invoice_pks: list[int]) -> list[str]:
    """Why these imported invoices can no longer be taken back: paid in Carnet, or changed."""
    problems = []
    for part in bulk.chunks(invoice_pks):
        for invoice in Invoice.objects.filter(pk__in=part).order_by("pk"):
            carnet_paid = invoice.allocations.exclude(
                payment__reference__startswith=PAID_BEFORE_REFERENCE
            )
            if (
                invoice.deleted_at
                or carnet_paid.exists()
                or invoice.allocations.filter(unapplied_at__isnull=False).exists()
                or invoice.lines.count() != 1
            ):
                problems.append(f"{invoice} has been paid or changed in Carnet")
    return problems


def bills_close(*, actor, invoice_pks: list[int]) -> None:
    """Take imported invoices back out (caller's transaction; the caller reverses the opening
    balances): their "paid before" payments, allocations, lines and the invoices themselves go.
    Their numbers are not reused: an undone import leaves a gap, said in the activity log."""

    problems = bills_in_use(invoice_pks)
    if problems:
        raise Conflict(
            f"This import cannot be undone: {'; '.join(problems[:5])}.", code="import_used"
        )
    for part in bulk.chunks(invoice_pks):
        payments = list(
            Allocation.objects.filter(invoice_id__in=part).values_list("payment_id", flat=True)
        )
        activity.record_many(
            actor=actor, verb="import undone", objs=list(Invoice.objects.filter(pk__in=part))
        )
        Allocation.objects.filter(invoice_id__in=part).delete()
        Payment.objects.filter(pk__in=payments).delete()
        InvoiceLineTax.objects.filter(line__invoice_id__in=part).delete()
        InvoiceLine.objects.filter(invoice_id__in=part).delete()
        Invoice.objects.filter(pk__in=part).delete()
