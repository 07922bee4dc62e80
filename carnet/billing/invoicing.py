"""Invoices: create (manual lines, products), delete. Each posts to the ledger."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from carnet.clinic.models import IncomeCategory, Product, Tax, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.people.models import StaffMember
from carnet.ledger.selectors import postings_for_source
from carnet.ledger.services import Line, transaction_post, transaction_reverse

from .locks import lock_invoice
from .models import Invoice, InvoiceCounter, InvoiceLine, InvoiceLineTax
from .tax import line_amounts


@dataclass
class LineInput:
    """What a caller asks for; missing prices and taxes come from the product or treatment."""

    kind: str = InvoiceLine.Kind.MANUAL
    description: str = ""
    quantity: int = 1
    unit_price_minor: int | None = None
    adjustment_minor: int = 0
    income_category_id: int | None = None
    tax_ids: list[int] | None = None
    tax_inclusive: bool | None = None
    product_id: int | None = None
    treatment_id: int | None = None
    staff_id: int | None = None
    extra: dict = field(default_factory=dict)


def _next_number() -> int:
    # The UPDATE row-locks the counter until commit (PostgreSQL) or runs under the write lock
    # (SQLite), so concurrent invoices take consecutive numbers and a rollback frees its number.
    # The data migration makes the row; get_or_create covers a database flushed since (tests).
    InvoiceCounter.objects.get_or_create(pk=1)
    InvoiceCounter.objects.filter(pk=1).update(next_number=F("next_number") + 1)
    return InvoiceCounter.objects.get(pk=1).next_number - 1


def _resolve(i: int, line: LineInput) -> tuple[dict, list[Tax]]:
    where = f"lines.{i}"
    source = None
    if line.product_id is not None:
        source = Product.objects.filter(pk=line.product_id, is_active=True).first()
        if source is None:
            raise ValidationFailed(f"Line {i + 1}: no active product with id {line.product_id}.",
                                   fields={f"{where}.product_id": ["Unknown product."]})
        kind = InvoiceLine.Kind.PRODUCT
    elif line.treatment_id is not None:
        source = Treatment.objects.filter(pk=line.treatment_id).first()
        if source is None:
            raise ValidationFailed(f"Line {i + 1}: no treatment with id {line.treatment_id}.",
                                   fields={f"{where}.treatment_id": ["Unknown treatment."]})
        kind = InvoiceLine.Kind.TREATMENT
    else:
        kind = line.kind if line.kind in InvoiceLine.Kind.values else InvoiceLine.Kind.MANUAL
    price = line.unit_price_minor if line.unit_price_minor is not None else getattr(source, "price_minor", None)
    category_id = line.income_category_id or getattr(source, "income_category_id", None)
    description = (line.description or getattr(source, "name", "")).strip()
    problems = {}
    if price is None or price < 0:
        problems[f"{where}.unit_price_minor"] = ["Enter a price of zero or more."]
    if category_id is None or not IncomeCategory.objects.filter(pk=category_id).exists():
        problems[f"{where}.income_category_id"] = ["Choose an income category."]
    if not description:
        problems[f"{where}.description"] = ["Describe the line."]
    if line.staff_id is not None and not StaffMember.objects.filter(pk=line.staff_id).exists():
        problems[f"{where}.staff_id"] = ["Unknown staff member."]
    if line.quantity < 1:
        problems[f"{where}.quantity"] = ["Quantity must be at least 1."]
    if price is not None and not 0 <= line.adjustment_minor <= price * line.quantity:
        problems[f"{where}.adjustment_minor"] = ["A discount must be between zero and the line's price."]
    if problems:
        first = next(iter(problems.values()))[0]
        raise ValidationFailed(f"Line {i + 1}: {first}", fields=problems)
    if line.tax_ids is not None:
        taxes = list(Tax.objects.filter(pk__in=line.tax_ids))
        if len(taxes) != len(set(line.tax_ids)):
            raise ValidationFailed(f"Line {i + 1}: unknown tax.", fields={f"{where}.tax_ids": ["Unknown tax id."]})
    else:
        taxes = list(source.taxes.all()) if source is not None else []
    inclusive = line.tax_inclusive if line.tax_inclusive is not None else getattr(source, "tax_inclusive", False)
    data = dict(kind=kind, description=description[:200], quantity=line.quantity, unit_price_minor=price,
                adjustment_minor=line.adjustment_minor, tax_inclusive=inclusive, income_category_id=category_id,
                staff_id=line.staff_id, product=source if kind == InvoiceLine.Kind.PRODUCT else None,
                treatment=source if kind == InvoiceLine.Kind.TREATMENT else None)
    return data, taxes


def _take_stock(product: Product, quantity: int) -> None:
    taken = Product.objects.filter(pk=product.pk, stock__gte=quantity).update(stock=F("stock") - quantity)
    if not taken:
        left = Product.objects.get(pk=product.pk).stock
        raise Conflict(f"Only {left} of “{product.name}” left in stock. Sell fewer, or correct the stock count "
                       "in Settings → Products.", code="out_of_stock")


@transaction.atomic
def invoice_create(*, actor, patient, lines: list[LineInput], location=None, staff=None,
                   invoice_date=None, notes: str = "", action: Action = Action.SELL) -> Invoice:
    """Issue an invoice: A/R up by the total, revenue per income category, tax payable per tax."""
    require(actor, action)
    if not lines:
        raise ValidationFailed("Add at least one line to the invoice.", fields={"lines": ["At least one line."]})
    clinic = clinic_get()
    resolved = [_resolve(i, line) for i, line in enumerate(lines)]
    now = clock.now()
    invoice = Invoice.objects.create(
        number=_next_number(), patient=patient, location=location, staff=staff, notes=notes,
        invoice_date=invoice_date or clock.today(clinic.time_zone), created_at=now,
    )
    revenue, taxes_due = defaultdict(int), defaultdict(int)
    for data, taxes in resolved:
        if data["product"] is not None:
            _take_stock(data["product"], data["quantity"])
        gross = data["unit_price_minor"] * data["quantity"] - data["adjustment_minor"]
        amounts = line_amounts(gross=gross, rates=[t.rate for t in taxes], inclusive=data["tax_inclusive"],
                               currency=clinic.currency)
        line = InvoiceLine.objects.create(invoice=invoice, net_minor=amounts.net, tax_minor=sum(amounts.taxes),
                                          total_minor=amounts.total, **data)
        InvoiceLineTax.objects.bulk_create(
            InvoiceLineTax(line=line, tax=t, rate=t.rate, amount_minor=a) for t, a in zip(taxes, amounts.taxes)
        )
        revenue[data["income_category_id"]] += amounts.net
        for t, a in zip(taxes, amounts.taxes):
            taxes_due[t.pk] += a
    invoice.subtotal_minor = sum(revenue.values())
    invoice.tax_minor = sum(taxes_due.values())
    invoice.total_minor = invoice.subtotal_minor + invoice.tax_minor
    invoice.save(update_fields=["subtotal_minor", "tax_minor", "total_minor"])
    if invoice.total_minor:  # a no-charge invoice moves no money
        transaction_post(kind="invoice_issued", source=invoice, memo=str(invoice), at=now, lines=[
            Line(accounts.AR, debit=invoice.total_minor, patient_id=patient.pk),
            *[Line(accounts.revenue(cat), credit=amount) for cat, amount in revenue.items()],
            *[Line(accounts.tax_payable(tax), credit=amount) for tax, amount in taxes_due.items()],
        ])
    activity.record(actor=actor, verb="created", obj=invoice, after=activity.snapshot(invoice))
    return invoice


@transaction.atomic
def invoice_delete(*, actor, invoice: Invoice, action: Action = Action.INVOICE_DELETE) -> Invoice:
    """Only while no payment is applied. The number stays used; the ledger is reversed.
    `action` lets scheduling un-arrive (a scheduling permission) reverse its own arrival invoice."""
    require(actor, action)
    invoice = lock_invoice(invoice.pk)
    if invoice.deleted_at:
        raise NotFound(f"{invoice} is already deleted.")
    if invoice.applied_minor:
        applied = clinic_get().money(invoice.applied_minor)
        raise Conflict(f"{invoice} has {applied} of payments applied. Unapply those payments first "
                       "(they become the patient's credit), then delete the invoice.", code="invoice_has_payments")
    before = activity.snapshot(invoice)
    for line in invoice.lines.filter(product__isnull=False):
        Product.objects.filter(pk=line.product_id).update(stock=F("stock") + line.quantity)
    issued = {p.transaction for p in postings_for_source(invoice).select_related("transaction")}
    for txn in issued:
        if txn.kind == "invoice_issued":
            transaction_reverse(txn=txn, memo=f"{invoice} deleted", kind="invoice_deleted")
    invoice.deleted_at = clock.now()
    invoice.save(update_fields=["deleted_at"])
    activity.record(actor=actor, verb="deleted", obj=invoice, before=before, after=activity.snapshot(invoice))
    return invoice
