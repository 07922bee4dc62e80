"""Pass invoices (the glossary's word: a membership's cycle, a payment plan's instalment, or a
package paid in full, 1 of 1): their invoice lines and issuing them through billing's invoicing.

At the passes root: packages issue their instalments, memberships their cycles, and charging a
pass invoice issues one that is due.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import F

from carnet.billing.invoicing import InvoiceOrder, LineInput, invoices_create
from carnet.core.permissions import Action
from carnet.passes.models import Pass, PassInvoice, PassTemplate


def template_line(template: PassTemplate, unit: int) -> list[LineInput]:
    """The one invoice line selling `template` issues, at `unit` (a checkout's live totals)."""
    return [
        LineInput(
            kind=template.kind,
            description=template.name,
            unit_price_minor=unit,
            income_category_id=template.income_category_id,
            tax_ids=[t.pk for t in template.taxes.all()],
            tax_inclusive=template.tax_inclusive,
        )
    ]


def _line(sold: Pass, row: PassInvoice, unit_price: int) -> LineInput:
    if sold.kind == Pass.Kind.MEMBERSHIP:
        last = row.period_end - dt.timedelta(days=1)
        label = f"{sold.name} — {row.period_start:%Y-%m-%d} to {last:%Y-%m-%d}"
        if row.skipped:  # a frozen cycle billed its freeze fee
            label = f"{sold.name} — freeze fee, {row.period_start:%Y-%m-%d} to {last:%Y-%m-%d}"
    elif sold.instalments == 1:
        label = sold.name
    else:
        label = f"{sold.name} — instalment {row.seq} of {sold.instalments}"
    return LineInput(
        kind=sold.kind,
        description=label,
        unit_price_minor=unit_price,
        income_category_id=sold.income_category_id,
        tax_ids=[t.pk for t in sold.taxes.all()],
        tax_inclusive=sold.tax_inclusive,
        staff_id=sold.sold_by_id,
    )


def pass_invoices_issue(
    rows: list[PassInvoice],
    *,
    actor,
    action: Action | None,
    location=None,
    own_location: bool = False,
) -> None:
    """Invoice instalments or cycles (their passes locked by the caller) in one go, at `location` or
    with `own_location` each pass's own, setting each row's invoice and amounts and its pass's
    deferred amount in memory: the caller saves them."""
    invoices = invoices_create(
        actor=actor,
        action=action,
        orders=[
            InvoiceOrder(
                patient_id=row.sold_pass.patient_id,
                lines=[_line(row.sold_pass, row, row.unit_price_minor)],
                location_id=row.sold_pass.location_id if own_location else location and location.pk,
                staff_id=row.sold_pass.sold_by_id,
            )
            for row in rows
        ],
    )
    for row, invoice in zip(rows, invoices):
        row.invoice = invoice
        row.amount_minor, row.net_minor = invoice.total_minor, invoice.subtotal_minor
        row.sold_pass.deferred_minor += invoice.subtotal_minor


def pass_invoice_issue(*, actor, row: PassInvoice, action: Action | None, location=None):
    """Invoice one pass invoice, an instalment or a cycle (inside the caller's transaction, row
    locked by the caller)."""
    pass_invoices_issue([row], actor=actor, action=action, location=location)
    row.save(update_fields=["invoice", "amount_minor", "net_minor"])
    Pass.objects.filter(pk=row.sold_pass_id).update(
        deferred_minor=F("deferred_minor") + row.net_minor
    )
    return row.invoice
