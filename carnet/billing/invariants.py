"""Billing's invariants for `ledger_check` (SPEC 3.5), recomputed from rows and the ledger."""

from collections import defaultdict

from django.db.models import F, Q, Sum

from carnet.ledger import accounts
from carnet.ledger.invariants import invariant
from carnet.ledger.selectors import balances_by_patient

from .models import CardAttempt, Invoice, Payment


def _compare(label: str, ledger: dict[int, int], rows: dict[int, int]):
    for patient_id in sorted(set(ledger) | set(rows)):
        if ledger.get(patient_id, 0) != rows.get(patient_id, 0):
            yield (
                f"patient #{patient_id}: ledger {label} {ledger.get(patient_id, 0)} "
                f"!= {rows.get(patient_id, 0)} from the records"
            )


@invariant("A/R per patient equals the sum of invoice balances")
def _receivables():
    rows = defaultdict(int)
    for patient_id, total, applied in Invoice.objects.filter(deleted_at__isnull=True).values_list(
        "patient_id", "total_minor", "applied_minor"
    ):
        rows[patient_id] += total - applied
    yield from _compare("A/R", balances_by_patient(accounts.AR), rows)


@invariant("credit per patient equals the sum of unapplied payments")
def _credit():
    rows = defaultdict(int)
    for patient_id, amount, applied, refunded, gift_card in Payment.objects.values_list(
        "patient_id", "amount_minor", "applied_minor", "refunded_minor", "gift_card_minor"
    ):
        rows[patient_id] += amount - applied - refunded - gift_card
    yield from _compare("credit", balances_by_patient(accounts.PATIENT_CREDIT), rows)


@invariant("invoice totals match their lines and applied payments")
def _invoice_totals():
    invoices = Invoice.objects.annotate(
        lines_total=Sum("lines__total_minor", distinct=False),
    ).values_list("pk", "number", "total_minor", "lines_total")
    for pk, number, total, lines_total in invoices:
        if total != (lines_total or 0):
            yield f"invoice #{number}: total {total} != lines {lines_total or 0}"
    applied = Invoice.objects.annotate(
        live=Sum("allocations__amount_minor", filter=Q(allocations__unapplied_at=None))
    )
    for invoice in applied.exclude(applied_minor=F("live")).exclude(applied_minor=0, live=None):
        yield (
            f"invoice #{invoice.number}: applied {invoice.applied_minor} != allocations "
            f"{invoice.live or 0}"
        )
    for invoice in Invoice.objects.filter(applied_minor__gt=F("total_minor")):
        yield (
            f"invoice #{invoice.number}: over-applied ({invoice.applied_minor} > "
            f"{invoice.total_minor})"
        )


@invariant("payments match their allocations and refunds")
def _payment_totals():
    live = Payment.objects.annotate(
        live=Sum("allocations__amount_minor", filter=Q(allocations__unapplied_at=None))
    )
    for payment in live.exclude(applied_minor=F("live")).exclude(applied_minor=0, live=None):
        yield (
            f"payment #{payment.pk}: applied {payment.applied_minor} != allocations "
            f"{payment.live or 0}"
        )
    refunded = Payment.objects.annotate(rows=Sum("refunds__amount_minor"))
    for payment in refunded.exclude(refunded_minor=F("rows")).exclude(refunded_minor=0, rows=None):
        yield (
            f"payment #{payment.pk}: refunded {payment.refunded_minor} != refunds "
            f"{payment.rows or 0}"
        )


@invariant(
    "every succeeded card charge has exactly one payment, every succeeded card refund one refund"
)
def _card_attempts():

    charges = CardAttempt.objects.filter(
        kind=CardAttempt.Kind.CHARGE, status=CardAttempt.Status.SUCCEEDED
    )
    for attempt in charges.exclude(payment__gateway_charge_id=F("gateway_id")).order_by("pk"):
        yield (
            f"card charge attempt #{attempt.pk} ({attempt.gateway_id}) has no payment recording it"
        )
    refunds = CardAttempt.objects.filter(
        kind=CardAttempt.Kind.REFUND, status=CardAttempt.Status.SUCCEEDED
    )
    for attempt in refunds.exclude(refund__gateway_refund_id=F("gateway_id")).order_by("pk"):
        yield f"card refund attempt #{attempt.pk} ({attempt.gateway_id}) has no refund recording it"
    for payment in (
        Payment.objects.filter(method=Payment.Method.CARD_GATEWAY)
        .exclude(gateway_charge_id="")
        .exclude(card_attempts__gateway_id=F("gateway_charge_id"))
        .filter(pk__in=CardAttempt.objects.values("payment_id"))
        .order_by("pk")
    ):
        yield (
            f"payment #{payment.pk} ({payment.gateway_charge_id}) is recorded by no succeeded "
            "card attempt"
        )
    held = defaultdict(int)
    for attempt in CardAttempt.objects.filter(
        kind=CardAttempt.Kind.REFUND, status__in=("pending", "unknown")
    ):
        if attempt.context.get("held"):
            held[attempt.payment_id] += attempt.amount_minor
    for payment in Payment.objects.filter(Q(held_minor__gt=0) | Q(pk__in=list(held))):
        if payment.held_minor != held.get(payment.pk, 0):
            yield (
                f"payment #{payment.pk}: held {payment.held_minor} != open card refunds "
                f"{held.get(payment.pk, 0)}"
            )
