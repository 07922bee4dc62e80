"""Row locks in one fixed order: invoices (by pk) before payments (by pk).

On PostgreSQL these are SELECT … FOR UPDATE. SQLite has no row locks; there every
transaction starts with BEGIN IMMEDIATE (settings), which serialises writers, so the
re-read below is just as safe.
"""

from .models import Invoice, Payment


def lock_invoices(pks) -> dict[int, Invoice]:
    rows = Invoice.objects.select_for_update(of=("self",)).filter(pk__in=set(pks)).order_by("pk")
    return {inv.pk: inv for inv in rows}


def lock_invoice(pk: int) -> Invoice:
    return lock_invoices([pk])[pk]


def lock_payments(pks) -> dict[int, Payment]:
    rows = Payment.objects.select_for_update(of=("self",)).filter(pk__in=set(pks)).order_by("pk")
    return {p.pk: p for p in rows}


def lock_payment(pk: int) -> Payment:
    return lock_payments([pk])[pk]
