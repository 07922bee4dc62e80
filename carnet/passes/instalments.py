"""Payment plans (SPEC 9.6) and automatic membership payments (6.2): the daily job that invoices
due instalments and charges the card on file, exactly once per instalment or membership cycle
however often (or concurrently) it runs.

Each instalment moves in two committed steps, each safe to repeat: (1) under the instalment's
row lock, invoice it if it has no invoice yet; (2) charge the card with the instalment's own
idempotency key *outside* any transaction (no lock held over the network), then record the
charge, once per charge id. A crash between (1) and (2) or during (2) is picked up by the next run:
the gateway returns the same charge for the same key, and the payment is found, not recorded twice.
A declined card leaves the invoice unpaid, emails the patient and the clinic, and is retried
after 1, 3 and 7 days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import transaction

from carnet.billing.payments import payment_record_charge
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock

from .emails import instalment_declined_email, instalment_receipt_email
from .models import Pass, PassInvoice
from .selling import instalment_issue

RETRY_AFTER_DAYS = (1, 3, 7)  # after the 1st, 2nd and 3rd decline; then staff follow up


@dataclass
class Run:
    issued: list[int] = field(default_factory=list)
    charged: list[int] = field(default_factory=list)
    declined: list[int] = field(default_factory=list)


def _issue(pk: int, today: dt.date) -> bool:
    with transaction.atomic():
        row = (PassInvoice.objects.select_for_update(of=("self",)).select_related("sold_pass__template",
                                                                                   "sold_pass__patient")
               .get(pk=pk))
        if row.invoice_id or row.sold_pass.status != Pass.Status.ACTIVE or row.due_on > today:
            return False  # another run issued it first, or the pass ended
        instalment_issue(actor=None, row=row, action=None)
        if row.sold_pass.card_id:
            PassInvoice.objects.filter(pk=pk).update(next_attempt_on=today)
        activity.record(actor=None, verb="instalment invoiced", obj=row.sold_pass,
                        after={"instalment": row.seq, "invoice": row.invoice_id})
        return True


def _charge(pk: int, today: dt.date) -> str | None:
    """Charge one issued, unpaid instalment. Returns "charged", "declined" or None (nothing to do)."""
    from carnet.gateway.base import GatewayUnavailable, PaymentFailed
    from carnet.gateway.services import card_charge

    row = PassInvoice.objects.select_related("invoice", "sold_pass__card", "sold_pass__patient").get(pk=pk)
    sold, invoice = row.sold_pass, row.invoice
    if invoice is None or invoice.deleted_at or invoice.balance_minor <= 0 or sold.card is None \
            or sold.status != Pass.Status.ACTIVE:
        return None
    try:
        # The amount is the instalment's, fixed by its row, so a retry asks the gateway for the same charge.
        result = card_charge(card_or_token=sold.card, amount_minor=invoice.total_minor,
                             currency=clinic_get().currency, idempotency_key=row.charge_key)
    except GatewayUnavailable as failure:  # maybe charged, maybe not: the next run asks again with the same key
        PassInvoice.objects.filter(pk=pk).update(last_error=failure.message[:200])
        return "unavailable"
    except PaymentFailed as failure:
        with transaction.atomic():
            row = PassInvoice.objects.select_for_update(of=("self",)).get(pk=pk)
            row.charge_attempts += 1
            row.last_error = failure.message[:200]
            tries = row.charge_attempts
            row.next_attempt_on = today + dt.timedelta(days=RETRY_AFTER_DAYS[tries - 1]) \
                if tries <= len(RETRY_AFTER_DAYS) else None
            row.save(update_fields=["charge_attempts", "last_error", "next_attempt_on"])
            instalment_declined_email(row=row, reason=failure.message)
        return "declined"
    with transaction.atomic():
        PassInvoice.objects.select_for_update(of=("self",)).get(pk=pk)  # a concurrent run records after us, and finds it
        what = (f"cycle from {row.period_start:%Y-%m-%d}" if sold.kind == Pass.Kind.MEMBERSHIP
                else f"instalment {row.seq} of {sold.instalments}")
        payment = payment_record_charge(patient=sold.patient, amount_minor=invoice.total_minor, invoice=invoice,
                                        reference=f"{sold.name}: {what}",
                                        charge_id=result.charge_id, card=sold.card)
        PassInvoice.objects.filter(pk=pk).update(next_attempt_on=None, last_error="")
        instalment_receipt_email(row=row, payment=payment)
    return "charged"


def instalments_bill(*, today: dt.date | None = None) -> Run:
    """Invoice every due instalment once, then charge those with a card on file that are due a try."""
    today = today or clock.today(clinic_get().time_zone)
    run = Run()
    due = (PassInvoice.objects.filter(invoice__isnull=True, due_on__lte=today, sold_pass__status=Pass.Status.ACTIVE,
                                      sold_pass__kind=Pass.Kind.PACKAGE)  # membership cycles: cycle_billing.cycles_issue
           .order_by("due_on", "pk").values_list("pk", flat=True))
    for pk in list(due):
        if _issue(pk, today):
            run.issued.append(pk)
    to_charge = (PassInvoice.objects.filter(invoice__isnull=False, next_attempt_on__lte=today,
                                            sold_pass__card__isnull=False, sold_pass__status=Pass.Status.ACTIVE)
                 .order_by("pk").values_list("pk", flat=True))
    for pk in list(to_charge):
        outcome = _charge(pk, today)
        if outcome == "charged":
            run.charged.append(pk)
        elif outcome == "declined":
            run.declined.append(pk)
    return run


def pass_charge_due(*, sold_pass: Pass, today: dt.date | None = None) -> Run:
    """Charge what of one pass is due a card charge now (e.g. right after selling an automatic
    membership, so the front desk sees the first cycle paid). Call it outside any transaction,
    like the job: the same instalment keys make it safe to race the job."""
    today = today or clock.today(clinic_get().time_zone)
    run = Run()
    due = (PassInvoice.objects.filter(sold_pass=sold_pass, invoice__isnull=False, next_attempt_on__lte=today)
           .order_by("pk").values_list("pk", flat=True))
    for pk in list(due):
        outcome = _charge(pk, today)
        if outcome == "charged":
            run.charged.append(pk)
        elif outcome == "declined":
            run.declined.append(pk)
    return run
