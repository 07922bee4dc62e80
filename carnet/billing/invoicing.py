"""Invoices: create (manual lines, products), delete. Each posts to the ledger."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import F

from carnet.clinic.models import IncomeCategory, Product, Tax, Treatment
from carnet.clinic.selectors import clinic_currency, clinic_get, clinic_today
from carnet.core import activity, atomic, bulk, clock, statements
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.limits import max_minor
from carnet.core.money import Money
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.selectors import postings_for_source
from carnet.ledger.services import (
    Entry,
    Line,
    transaction_post,
    transaction_reverse,
    transactions_post_many,
)
from carnet.people.models import StaffMember

from .locks import lock_invoice, lock_payments
from .models import Allocation, Invoice, InvoiceCounter, InvoiceLine, InvoiceLineTax
from .tax import line_amounts

LINE_DESCRIPTION_MAX = InvoiceLine._meta.get_field("description").max_length


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


# Pass sales are paid up front for services not yet given: their net is deferred (SPEC 3.5).
DEFERRED_KINDS = {
    InvoiceLine.Kind.PACKAGE: accounts.DEFERRED_PACKAGES,
    InvoiceLine.Kind.MEMBERSHIP: accounts.DEFERRED_MEMBERSHIPS,
}


def _revenue_account(kind: str, category_id: int) -> str:
    return DEFERRED_KINDS.get(kind) or accounts.revenue(category_id)


def invoice_numbers_next(count: int) -> int:
    """The first of `count` consecutive invoice numbers.

    The UPDATE row-locks the counter until commit (PostgreSQL) or runs under the write lock
    (SQLite), so concurrent invoices take consecutive numbers and a rollback frees its numbers."""
    first = _take_numbers(count)
    if first is None:  # the data migration makes the row; a database flushed since (tests) has none
        InvoiceCounter.objects.get_or_create(pk=1)
        first = _take_numbers(count)
    return first


def _take_numbers(count: int) -> int | None:
    """One UPDATE … RETURNING (PostgreSQL, SQLite ≥ 3.35); None when the counter row is missing."""
    with connection.cursor() as cur:
        cur.execute(_number_sql(), [count, count])
        row = cur.fetchone()
    return row[0] if row else None


def _number_sql() -> str:
    """Take invoice numbers (parameters: how many, twice) and return the first: the counter's
    UPDATE … RETURNING, also sent inside a one-line invoice's own statement."""
    table = connection.ops.quote_name(InvoiceCounter._meta.db_table)
    return (
        f"UPDATE {table} SET next_number = next_number + %s WHERE id = 1 RETURNING next_number - %s"
    )


def _cached(cache: dict, key: tuple, fetch):
    """One lookup per distinct key within one call (the billing job resolves
    thousands of alike lines)."""
    if key not in cache:
        cache[key] = fetch()
    return cache[key]


def _resolve(i: int, line: LineInput, cache: dict) -> tuple[dict, list[Tax]]:
    """A line as asked for, checked, with what it leaves out taken from its product or treatment:
    the invoice line's fields and its taxes. ValidationFailed names the line and the field."""
    source, kind = _line_source(i, line, cache)
    price = (
        line.unit_price_minor
        if line.unit_price_minor is not None
        else getattr(source, "price_minor", None)
    )
    category_id = line.income_category_id or getattr(source, "income_category_id", None)
    description = (line.description or getattr(source, "name", "")).strip()
    problems = _line_problems(i, line, cache, price, category_id, description)
    if problems:
        first = next(iter(problems.values()))[0]
        raise ValidationFailed(f"Line {i + 1}: {first}", fields=problems)
    taxes = _line_taxes(i, line, cache, source)
    inclusive = (
        line.tax_inclusive
        if line.tax_inclusive is not None
        else getattr(source, "tax_inclusive", False)
    )
    data = dict(
        kind=kind,
        description=description,
        quantity=line.quantity,
        unit_price_minor=price,
        adjustment_minor=line.adjustment_minor,
        tax_inclusive=inclusive,
        income_category_id=category_id,
        staff_id=line.staff_id,
        product=source if kind == InvoiceLine.Kind.PRODUCT else None,
        treatment=source if kind == InvoiceLine.Kind.TREATMENT else None,
    )
    return data, taxes


def _line_source(i: int, line: LineInput, cache: dict):
    """(the product or treatment the line sells or None, the line's kind)."""
    where = f"lines.{i}"
    source = None
    if line.product_id is not None:
        source = _cached(
            cache,
            ("product", line.product_id),
            lambda: Product.objects.filter(pk=line.product_id, is_active=True).first(),
        )
        if source is None:
            raise ValidationFailed(
                f"Line {i + 1}: no active product with id {line.product_id}.",
                fields={f"{where}.product_id": ["Unknown product."]},
            )
        kind = InvoiceLine.Kind.PRODUCT
    elif line.treatment_id is not None:
        source = _cached(
            cache,
            ("treatment", line.treatment_id),
            lambda: Treatment.objects.filter(pk=line.treatment_id).first(),
        )
        if source is None:
            raise ValidationFailed(
                f"Line {i + 1}: no treatment with id {line.treatment_id}.",
                fields={f"{where}.treatment_id": ["Unknown treatment."]},
            )
        kind = InvoiceLine.Kind.TREATMENT
    else:
        kind = line.kind if line.kind in InvoiceLine.Kind.values else InvoiceLine.Kind.MANUAL
    return source, kind


def _line_problems(i: int, line: LineInput, cache: dict, price, category_id, description) -> dict:
    """Field -> what is wrong with it, for every field of the line that is wrong."""
    where = f"lines.{i}"
    problems = {}
    if price is None or price < 0:
        problems[f"{where}.unit_price_minor"] = ["Enter a price of zero or more."]
    # A category taken from the product or treatment exists (a foreign key);
    # one asked for is checked.
    if (
        category_id is None
        or line.income_category_id
        and not _cached(
            cache,
            ("category", category_id),
            lambda: IncomeCategory.objects.filter(pk=category_id).exists(),
        )
    ):
        problems[f"{where}.income_category_id"] = ["Choose an income category."]
    if not description:
        problems[f"{where}.description"] = ["Describe the line."]
    if line.staff_id is not None and not _cached(
        cache,
        ("staff", line.staff_id),
        lambda: StaffMember.objects.filter(pk=line.staff_id).exists(),
    ):
        problems[f"{where}.staff_id"] = ["Unknown staff member."]
    if line.quantity < 1:
        problems[f"{where}.quantity"] = ["Quantity must be at least 1."]
    if price is not None and not 0 <= line.adjustment_minor <= price * line.quantity:
        problems[f"{where}.adjustment_minor"] = [
            "A discount must be between zero and the line's price."
        ]
    currency = clinic_currency()
    if price is not None and price * line.quantity > max_minor("line", currency):
        problems[f"{where}.unit_price_minor"] = [
            f"{Money(max_minor('line', currency), currency)} is the most a line can be (quantity "
            "× unit price)."
        ]
    if "\x00" in description or len(description) > LINE_DESCRIPTION_MAX:
        problems[f"{where}.description"] = [
            f"At most {LINE_DESCRIPTION_MAX} characters, and no null characters."
        ]
    return problems


def _line_taxes(i: int, line: LineInput, cache: dict, source) -> list[Tax]:
    """The taxes asked for (each must exist), else those of the product or treatment."""
    where = f"lines.{i}"
    if line.tax_ids is not None:
        taxes = _cached(
            cache,
            ("taxes", *sorted(set(line.tax_ids))),
            lambda: list(Tax.objects.filter(pk__in=line.tax_ids)),
        )
        if len(taxes) != len(set(line.tax_ids)):
            raise ValidationFailed(
                f"Line {i + 1}: unknown tax.", fields={f"{where}.tax_ids": ["Unknown tax id."]}
            )
    elif type(source) in _TAXES_OF:
        taxes = _TAXES_OF[type(source)].all(pk=source.pk)
    else:
        taxes = list(source.taxes.all()) if source is not None else []
    return taxes


def _taxes_of(model):
    """`item.taxes.all()` of a treatment or product, compiled (core.statements): every invoiced
    visit reads its treatment's."""
    name = model._meta.model_name  # the reverse of PricedItem.taxes
    return statements.select(lambda pk: Tax.objects.filter(**{name: pk}), pk=int)


_TAXES_OF = {Treatment: _taxes_of(Treatment), Product: _taxes_of(Product)}


def _take_stock(product: Product, quantity: int) -> None:
    taken = Product.objects.filter(pk=product.pk, stock__gte=quantity).update(
        stock=F("stock") - quantity
    )
    if not taken:
        left = Product.objects.get(pk=product.pk).stock
        raise Conflict(
            f"Only {left} of “{product.name}” left in stock. Sell fewer, or correct the stock "
            "count in Settings → Products.",
            code="out_of_stock",
        )


@dataclass
class InvoiceOrder:
    """One invoice to issue with invoices_create (ids, so a batch needs no loaded patients)."""

    patient_id: int
    lines: list[LineInput]
    location_id: int | None = None
    staff_id: int | None = None
    invoice_date: dt.date | None = None
    notes: str = ""


@dataclass
class _Draft:
    """An invoice worked out in memory: the invoice, its lines with their
    taxes, its ledger lines."""

    invoice: Invoice
    lines: list[tuple[InvoiceLine, list[tuple[Tax, int]]]]
    ledger: list[Line]


def _draft(
    order: InvoiceOrder, resolved: list[tuple[dict, list[Tax]]], *, currency: str, today, now
) -> _Draft:
    revenue, taxes_due, lines = defaultdict(int), defaultdict(int), []
    for data, taxes in resolved:
        gross = data["unit_price_minor"] * data["quantity"] - data["adjustment_minor"]
        amounts = line_amounts(
            gross=gross,
            rates=[t.rate for t in taxes],
            inclusive=data["tax_inclusive"],
            currency=currency,
        )
        lines.append(
            (
                InvoiceLine(
                    net_minor=amounts.net,
                    tax_minor=sum(amounts.taxes),
                    total_minor=amounts.total,
                    **data,
                ),
                list(zip(taxes, amounts.taxes)),
            )
        )
        revenue[_revenue_account(data["kind"], data["income_category_id"])] += amounts.net
        for t, a in zip(taxes, amounts.taxes):
            taxes_due[t.pk] += a
    subtotal, tax = sum(revenue.values()), sum(taxes_due.values())
    invoice = Invoice(
        patient_id=order.patient_id,
        location_id=order.location_id,
        staff_id=order.staff_id,
        notes=order.notes,
        invoice_date=order.invoice_date or today,
        created_at=now,
        subtotal_minor=subtotal,
        tax_minor=tax,
        total_minor=subtotal + tax,
    )
    ledger = (
        [  # a no-charge invoice moves no money
            Line(accounts.AR, debit=invoice.total_minor, patient_id=order.patient_id),
            *[Line(account, credit=amount) for account, amount in revenue.items() if amount],
            *[Line(accounts.tax_payable(t), credit=amount) for t, amount in taxes_due.items()],
        ]
        if invoice.total_minor
        else []
    )
    return _Draft(invoice, lines, ledger)


def _known(objs) -> dict:
    """`_resolve`'s cache seeded with rows the caller has just read (a treatment, a staff
    member), so the lines that name them are checked against those instead of read again."""
    cache = {}
    for obj in objs:
        if isinstance(obj, Treatment):
            cache[("treatment", obj.pk)] = obj
        elif isinstance(obj, StaffMember):
            cache[("staff", obj.pk)] = True
    return cache


def _line_tax_rows(drafts: list[_Draft]) -> list[dict]:
    return [
        {"line_id": line.pk, "tax_id": t.pk, "rate": t.rate, "amount_minor": a}
        for d in drafts
        for line, taxed in d.lines
        for t, a in taxed
    ]


def _one_line_inserted(drafts: list[_Draft], then: statements.Then | None) -> bool:
    """PostgreSQL: one invoice of one line (a visit's), its number (the counter, as
    invoice_numbers_next takes it), the line, its taxes and the caller's `then` in one statement
    (statements.insert_chain): the counter's row is then locked one round trip later, so every
    other arrival waits that much less. False, nothing sent, for anything else."""
    if len(drafts) != 1 or len(drafts[0].lines) != 1:
        return False
    (line, taxed), invoice = drafts[0].lines[0], drafts[0].invoice
    steps = [(Invoice, [invoice], None), (InvoiceLine, [line], "invoice_id")]
    if taxed:
        steps.append((InvoiceLineTax, _line_tax_rows(drafts), "line_id"))
    # (The counter's row exists: the data migration makes it, and apps.py again after a flush.)
    return statements.insert_chain(steps, taken=(_number_sql(), [1, 1], "number"), then=then)


@atomic.service
def invoices_create(
    *,
    actor,
    orders: list[InvoiceOrder],
    action: Action | None = Action.SELL,
    known=(),
    then: statements.Then | None = None,
) -> list[Invoice]:
    """Issue invoices: for each, A/R up by the total, revenue per income category, tax payable per
    tax. Many at once is how the billing job issues a batch of cycles in a few statements; a single
    invoice goes the same way. `action=None` is for the clinic's own jobs: no staff actor. `known`:
    treatments and staff members the caller holds (read in its transaction), not read again.
    `then`: the caller's updates that follow one invoice (its key in their slot), sent with it."""
    if action is not None:
        require(actor, action)
    if then is not None and len(orders) != 1:
        raise ValueError("`then` follows one invoice")
    now, cache, currency = clock.now(), _known(known), clinic_currency()
    # The clinic's row only for an order without its date (a visit's invoice has its own).
    today = clinic_today() if any(o.invoice_date is None for o in orders) else None
    drafts = []
    for order in orders:
        if not order.lines:
            raise ValidationFailed(
                "Add at least one line to the invoice.", fields={"lines": ["At least one line."]}
            )
        resolved = [_resolve(i, line, cache) for i, line in enumerate(order.lines)]
        for data, _ in resolved:
            if data["product"] is not None:
                _take_stock(data["product"], data["quantity"])
        drafts.append(_draft(order, resolved, currency=currency, today=today, now=now))
    if _one_line_inserted(drafts, then):  # its number (and `then`) in the same statement
        invoices = [drafts[0].invoice]
    else:
        first = invoice_numbers_next(len(drafts))
        for n, d in enumerate(drafts):
            d.invoice.number = first + n
        invoices = bulk.insert(Invoice, [d.invoice for d in drafts])
        for d in drafts:
            for line, _ in d.lines:
                line.invoice_id = d.invoice.pk
        bulk.insert(InvoiceLine, [line for d in drafts for line, _ in d.lines])
        bulk.insert_rows(InvoiceLineTax, _line_tax_rows(drafts))
        if then is not None:
            then.run(invoices[0].pk)
    entries = [
        Entry(kind="invoice_issued", source=d.invoice, memo=str(d.invoice), at=now, lines=d.ledger)
        for d in drafts
        if d.ledger
    ]
    if entries:  # a visit a pass covers in full is a no-charge invoice: nothing to post
        transactions_post_many(entries)
    activity.record_many(actor=actor, verb="created", objs=invoices)
    return invoices


@dataclass(frozen=True)
class Totals:
    """What invoices add up to: before tax, each tax (with its name and rate), and in all."""

    subtotal_minor: int = 0
    taxes: list[tuple[Tax, int]] = field(default_factory=list)
    total_minor: int = 0


def invoices_preview(*, invoices: list[list[LineInput]]) -> Totals:
    """The totals invoices with these lines would have, worked out exactly as invoices_create does
    (the same lines resolved, the same per-line tax rounding), nothing saved: a checkout's live
    totals. Raises ValidationFailed for a line invoices_create would refuse."""
    cache, currency = {}, clinic_currency()
    subtotal = total = 0
    by_tax: dict[Tax, int] = {}
    for lines in invoices:
        resolved = [_resolve(i, line, cache) for i, line in enumerate(lines)]
        draft = _draft(
            InvoiceOrder(patient_id=0, lines=lines),
            resolved,
            currency=currency,
            today=None,
            now=None,
        )
        subtotal, total = subtotal + draft.invoice.subtotal_minor, total + draft.invoice.total_minor
        for _line, taxed in draft.lines:
            for tax, amount in taxed:
                by_tax[tax] = by_tax.get(tax, 0) + amount
    return Totals(
        subtotal_minor=subtotal,
        taxes=sorted(by_tax.items(), key=lambda p: (p[0].name, p[0].pk)),
        total_minor=total,
    )


def invoice_create(
    *,
    actor,
    patient,
    lines: list[LineInput],
    location=None,
    staff=None,
    invoice_date=None,
    notes: str = "",
    action: Action | None = Action.SELL,
    known=(),
    then: statements.Then | None = None,
) -> Invoice:
    """Issue one invoice (see invoices_create); the invoice's `staff` counts as known."""
    order = InvoiceOrder(
        patient_id=patient.pk,
        lines=lines,
        location_id=location and location.pk,
        staff_id=staff and staff.pk,
        invoice_date=invoice_date,
        notes=notes,
    )
    [invoice] = invoices_create(
        actor=actor,
        orders=[order],
        action=action,
        known=[*known, *([staff] if staff else [])],
        then=then,
    )
    invoice.patient, invoice.location, invoice.staff = (
        patient,
        location,
        staff,
    )  # callers use them: no re-reads
    return invoice


@transaction.atomic
def invoice_delete(
    *,
    actor,
    invoice: Invoice,
    action: Action | None = Action.INVOICE_DELETE,
    pass_sale: bool = False,
) -> Invoice:
    """Only while no payment is applied. The number stays used; the ledger is reversed.
    `action` lets scheduling un-arrive (a scheduling permission) reverse its own arrival invoice,
    and passes (None: the caller checked) replace a visit's invoice once a package covers it."""
    if action is not None:
        require(actor, action)
    invoice = lock_invoice(invoice.pk)
    if invoice.deleted_at:
        raise NotFound(f"{invoice} is already deleted.")
    if not pass_sale and invoice.lines.filter(kind__in=list(DEFERRED_KINDS)).exists():
        raise Conflict(
            f"{invoice} sells a package or membership. Delete or refund it from its page "
            "(Billing → Packages & Memberships), so the pass ends with it.",
            code="pass_invoice",
        )
    if invoice.applied_minor:
        applied = clinic_get().money(invoice.applied_minor)
        raise Conflict(
            f"{invoice} has {applied} of payments applied. Unapply those payments first "
            "(they become the patient's credit), then delete the invoice.",
            code="invoice_has_payments",
        )
    before = activity.snapshot(invoice)
    for line in invoice.lines.filter(product__isnull=False):
        Product.objects.filter(pk=line.product_id).update(stock=F("stock") + line.quantity)
    issued = {p.transaction for p in postings_for_source(invoice).select_related("transaction")}
    for txn in issued:
        if txn.kind == "invoice_issued":
            transaction_reverse(txn=txn, memo=f"{invoice} deleted", kind="invoice_deleted")
    invoice.deleted_at = clock.now()
    invoice.save(update_fields=["deleted_at"])
    activity.record(
        actor=actor, verb="deleted", obj=invoice, before=before, after=activity.snapshot(invoice)
    )
    return invoice


# ----------------------------------------------------- for passes (refunds, redeeming a past visit)


def _unapply(invoice: Invoice, amount: int, now) -> list[Line]:
    """Unapply `amount` of the (locked) invoice's payments, newest first, splitting an allocation
    when only part of it goes back. Returns the ledger lines (A/R up, the payers' credit up)."""

    live = list(
        invoice.allocations.filter(unapplied_at__isnull=True).order_by("-applied_at", "-pk")
    )
    payments = lock_payments([a.payment_id for a in live])
    lines, left = [], amount
    for allocation in live:
        if left <= 0:
            break
        take = min(left, allocation.amount_minor)
        payment = payments[allocation.payment_id]
        allocation.unapplied_at = now
        allocation.save(update_fields=["unapplied_at"])
        if take < allocation.amount_minor:  # the rest stays applied, as a new allocation
            Allocation.objects.create(
                payment=payment,
                invoice=invoice,
                applied_at=now,
                amount_minor=allocation.amount_minor - take,
            )
        payment.applied_minor -= take
        payment.save(update_fields=["applied_minor"])
        invoice.applied_minor -= take
        lines += [
            Line(accounts.AR, debit=take, patient_id=invoice.patient_id),
            Line(accounts.PATIENT_CREDIT, credit=take, patient_id=payment.patient_id),
        ]
        left -= take
    invoice.save(update_fields=["applied_minor"])
    return lines


@transaction.atomic
def invoice_payments_unapply(*, invoice: Invoice, source, memo: str) -> int:
    """Turn every payment applied to an invoice back into the payers' credit (the caller checked
    access: passes uses it when a package now covers an already-paid visit). Returns the amount."""
    invoice = lock_invoice(invoice.pk)
    amount = invoice.applied_minor
    if amount:
        transaction_post(
            kind="payment_unapplied",
            source=source,
            memo=memo,
            lines=_unapply(invoice, amount, clock.now()),
        )
    return amount


@transaction.atomic
def invoice_take_back(
    *,
    invoice: Invoice,
    amount_minor: int,
    to_credit_minor: int,
    description: str,
    counter_lines,
    source,
    memo: str,
) -> InvoiceLine:
    """Reduce a pass-sale invoice by `amount_minor` (tax included) with a negative line, and give
    `to_credit_minor` of what was paid back to the patient as credit. The tax part is taken back in
    proportion to the invoice's tax; `counter_lines(net)` returns the debits for the net part
    (deferred revenue, revenue) and any credits (breakage), so the caller
    decides where value goes."""
    invoice = lock_invoice(invoice.pk)
    if invoice.deleted_at or not 0 <= amount_minor <= invoice.total_minor:
        raise Conflict(
            f"{invoice} cannot be reduced by {clinic_get().money(amount_minor)}.",
            code="over_credit",
        )
    new_total = invoice.total_minor - amount_minor
    must_unapply = max(0, invoice.applied_minor - new_total)
    if to_credit_minor != must_unapply:
        raise Conflict(
            f"{invoice}: returning {clinic_get().money(to_credit_minor)} as credit does not "
            "match what the reduction frees.",
            code="credit_mismatch",
        )
    taxes = list(
        InvoiceLineTax.objects.filter(line__invoice=invoice).values_list("tax_id", "amount_minor")
    )
    by_tax = defaultdict(int)
    for tax_id, amount in taxes:
        by_tax[tax_id] += amount
    back = {
        t: amount_minor * a // invoice.total_minor for t, a in by_tax.items() if invoice.total_minor
    }
    tax_back = sum(back.values())
    net = amount_minor - tax_back
    first = invoice.lines.exclude(kind=InvoiceLine.Kind.PASS_CREDIT).first()
    line = InvoiceLine.objects.create(
        invoice=invoice,
        kind=InvoiceLine.Kind.PASS_CREDIT,
        description=description[:200],
        quantity=1,
        unit_price_minor=-amount_minor,
        tax_inclusive=True,
        income_category_id=first.income_category_id,
        net_minor=-net,
        tax_minor=-tax_back,
        total_minor=-amount_minor,
    )
    InvoiceLineTax.objects.bulk_create(
        InvoiceLineTax(line=line, tax_id=t, rate=0, amount_minor=-a) for t, a in back.items() if a
    )
    now = clock.now()
    # Payments come off first: the total never drops below what is applied
    # (invoice_applied_within_total).
    unapplied = _unapply(invoice, must_unapply, now) if must_unapply else []
    invoice.subtotal_minor -= net
    invoice.tax_minor -= tax_back
    invoice.total_minor = new_total
    invoice.save(update_fields=["subtotal_minor", "tax_minor", "total_minor"])
    lines = [
        Line(accounts.AR, credit=amount_minor, patient_id=invoice.patient_id),
        *[Line(accounts.tax_payable(t), debit=a) for t, a in back.items()],
        *counter_lines(net),
        *unapplied,
    ]
    transaction_post(kind="pass_taken_back", source=source, memo=memo, at=now, lines=lines)
    return line
