"""Skip instead of stacking (issue 22 point 5): a membership cycle whose payment failed is written
off — by the daily job after the last retry when the clinic says so (Clinic.dunning_write_off),
or by staff — instead of being owed alongside the next cycles.

Written off, the cycle is not charged again and gives no uses (its uses left end; bookings it
already covers stay). Its invoice is reduced by what is still owed, with a negative line, and one
new, balanced journal transaction reverses it (the ledger is append-only): A/R is credited, the
tax taken back, and the cycle's fee leaves deferred revenue — memberships (any part of it already
recognised day by day is taken back from revenue). Paid in part: only the balance is written off
and the rest of the fee is earned.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from carnet.billing.invoicing import invoice_take_back
from carnet.billing.locks import lock_invoices
from carnet.core import activity, clock
from carnet.core.errors import Conflict
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post
from carnet.passes.dunning import past_due_refresh
from carnet.passes.locks import lock_pass
from carnet.passes.models import Pass, PassInvoice


class CycleFeeBack:
    """Where a cycle's fee goes when its invoice is reduced (a refund or a write-off): out of what
    is still deferred first, then back out of revenue (the part already recognised); `earn_rest`
    then recognises what stays deferred, so none of the cycle's fee is left there."""

    def __init__(self, sold: Pass, row: PassInvoice):
        self.category, self.deferred = sold.income_category_id, row.net_minor - row.recognised_minor

    def counter(self, net: int) -> list[Line]:
        from_deferred = min(net, self.deferred)
        self.deferred -= from_deferred
        return [
            Line(accounts.DEFERRED_MEMBERSHIPS, debit=from_deferred),
            Line(accounts.revenue(self.category), debit=net - from_deferred),
        ]

    def earn_rest(self, *, source, memo: str) -> None:
        if self.deferred:
            transaction_post(
                kind="membership_recognised",
                source=source,
                memo=memo,
                lines=[
                    Line(accounts.DEFERRED_MEMBERSHIPS, debit=self.deferred),
                    Line(accounts.revenue(self.category), credit=self.deferred),
                ],
            )


def cycle_write_off(*, actor, row: PassInvoice, reason: str = "") -> PassInvoice:
    """Write off what a membership cycle still owes (see the module). Staff need the refund right;
    the daily job passes actor=None. Joins the caller's transaction."""
    if actor is not None:
        require(actor, Action.REFUND)
    with transaction.atomic():
        row = PassInvoice.objects.select_related("sold_pass").get(pk=row.pk)
        invoice = (
            lock_invoices([row.invoice_id])[row.invoice_id] if row.invoice_id else None
        )  # invoice, then pass
        sold = lock_pass(row.sold_pass_id)
        row = PassInvoice.objects.select_for_update(of=("self",)).get(pk=row.pk)
        if sold.kind != Pass.Kind.MEMBERSHIP or invoice is None or invoice.deleted_at:
            raise Conflict(
                "Only an invoiced membership cycle can be written off.", code="not_invoiced"
            )
        if row.written_off_at:
            return row  # done before (a rerun of the job, a second click)
        owed = invoice.balance_minor
        if owed <= 0:
            raise Conflict(
                f"{sold.name}: this cycle is paid; there is nothing to write off.",
                code="cycle_paid",
            )
        fee = CycleFeeBack(sold, row)
        memo = f"{sold.name}: cycle {row.seq} written off"
        invoice_take_back(
            invoice=invoice,
            amount_minor=owed,
            to_credit_minor=0,
            source=row,
            memo=memo,
            description=f"Written off: {sold.name}, {row.period_start:%Y-%m-%d} cycle (not paid)",
            counter_lines=fee.counter,
        )
        fee.earn_rest(source=row, memo=memo)  # paid in part: what is left of the fee is earned now
        unearned = row.net_minor - row.recognised_minor  # all of it has now left deferred revenue
        before = activity.snapshot(row)
        PassInvoice.objects.filter(pk=row.pk).update(
            written_off_at=clock.now(),
            next_attempt_on=None,
            needs_new_card=False,
            recognised_minor=row.net_minor,
            uses_allowed=row.used_count,
        )  # no more uses this cycle
        Pass.objects.filter(pk=sold.pk).update(recognised_minor=F("recognised_minor") + unearned)
        past_due_refresh(sold.pk)
        row.refresh_from_db()
        activity.record(
            actor=actor,
            verb="cycle written off",
            obj=sold,
            before=before,
            after={**activity.snapshot(row), "amount_minor": owed, "reason": reason[:200]},
        )
    return row
