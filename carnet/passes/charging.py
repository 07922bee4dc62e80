"""Charging due pass invoices, for both kinds of pass: a payment plan's instalments (SPEC 9.6) and
an automatic membership's cycles (6.2). The daily job's charging step (`pass_invoices_bill`)
invoices due instalments and charges the card on file, exactly once per pass invoice however
often (or concurrently) it runs; `pass_charge_due` charges one pass's due pass invoices at once
(after a sale, a new card, "Retry now"). A membership's cycles are invoiced by
memberships.cycle_billing, then charged here. At the passes root: packages and memberships both
charge through it.

Each pass invoice moves in two committed steps, each safe to repeat: (1) under its row lock,
invoice it if it has no invoice yet (instalments only); (2) charge the card for the balance still
owed, as a card attempt (billing.card_attempts: recorded, called outside any transaction, outcome
recorded). Before trying again, the job asks the gateway what became of the last attempt that got
no answer (a crash, a lost response), so a charge that went through is recorded once — as credit
if the invoice was paid at the desk meanwhile — even after the card was changed. A declined card
leaves the invoice unpaid, emails the patient and the clinic, and is retried on the clinic's
schedule (a soft decline) or waits for a new card (a hard one): passes.dunning. One row's error
is recorded on the row and never stops the others.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from django.db import transaction

from carnet.billing import card_attempts
from carnet.billing.card_attempts import Purpose, purpose_register
from carnet.billing.models import CardAttempt
from carnet.clinic.selectors import clinic_today
from carnet.core import activity, clock
from carnet.core.errors import CarnetError
from carnet.gateway.services import AuthenticationPending, GatewayUnavailable, PaymentFailed
from carnet.passes.dunning import decline_record, past_due_refresh
from carnet.passes.emails import pass_invoice_receipt_email
from carnet.passes.invoicing import pass_invoice_issue
from carnet.passes.models import Pass, PassInvoice


@dataclass
class Run:
    issued: list[int] = field(default_factory=list)
    charged: list[int] = field(default_factory=list)
    declined: list[int] = field(default_factory=list)
    authenticate: object = (
        None  # an on-session charge waiting for its card holder's bank (AuthenticationPending)
    )


def _issue(pk: int, today: dt.date) -> bool:
    with transaction.atomic():
        row = (
            PassInvoice.objects.select_for_update(of=("self",))
            .select_related("sold_pass__template", "sold_pass__patient")
            .get(pk=pk)
        )
        if row.invoice_id or row.sold_pass.status != Pass.Status.ACTIVE or row.due_on > today:
            return False  # another run issued it first, or the pass ended
        pass_invoice_issue(actor=None, row=row, action=None)
        if row.sold_pass.card_id:
            PassInvoice.objects.filter(pk=pk).update(next_attempt_on=today)
        activity.record(
            actor=None,
            verb="instalment invoiced",
            obj=row.sold_pass,
            after={"instalment": row.seq, "invoice": row.invoice_id},
        )
        return True


def _charge(
    pk: int, today: dt.date, *, on_session: bool = False, run: Run | None = None
) -> str | None:
    """Charge one issued, unpaid pass invoice. Returns "charged", "declined", "unavailable",
    "authenticating" or None. `on_session`: the card holder is at the page (an online sign-up's
    first cycle): a bank that asks them to confirm (3-D Secure) leaves the charge waiting
    (run.authenticate, for the page to complete), and the page's return reads its outcome."""

    lost = card_attempts.open_attempt_for(purpose="instalment", pass_invoice=pk)
    if on_session and lost is not None and lost.context.get("authenticating"):
        try:
            card_attempts.charge_run(lost)  # the outcome, read from the gateway by the stored id
        except AuthenticationPending as exc:
            if run is not None:
                run.authenticate = exc
            return "authenticating"
        except GatewayUnavailable:
            return "unavailable"
        except PaymentFailed as failure:  # the bank's check failed: declined, as below
            return _declined(pk, today, failure)
        return "charged"
    if (
        lost is not None
        and lost.status == CardAttempt.Status.PENDING
        and lost.created_at > clock.now() - card_attempts.RECONCILE_AFTER
    ):
        # Another run's call may still be in flight: asking the gateway now could find nothing yet,
        # mark it failed and charge again. That run records its answer; reconciliation, a lost one.
        return None
    if lost is not None:  # the last try got no answer: what happened, before anything else
        outcome = card_attempts.attempt_resolve(lost)
        if outcome == CardAttempt.Status.SUCCEEDED:
            return "charged"
        if (
            outcome == CardAttempt.Status.PENDING
        ):  # its card holder is confirming it with their bank
            return None
        if outcome == CardAttempt.Status.UNKNOWN:
            PassInvoice.objects.filter(pk=pk).update(last_error=lost.message[:200])
            return "unavailable"
    row = PassInvoice.objects.select_related(
        "invoice", "sold_pass__card", "sold_pass__patient"
    ).get(pk=pk)
    sold, invoice = row.sold_pass, row.invoice
    if (
        invoice is None
        or invoice.deleted_at
        or invoice.balance_minor <= 0
        or sold.card is None
        or sold.status != Pass.Status.ACTIVE
    ):
        if invoice is not None and invoice.balance_minor <= 0:
            PassInvoice.objects.filter(pk=pk).update(next_attempt_on=None, last_error="")
        return None
    what = (
        f"cycle from {row.period_start:%Y-%m-%d}"
        if sold.kind == Pass.Kind.MEMBERSHIP
        else f"instalment {row.seq} of {sold.instalments}"
    )
    try:
        # The balance still owed, not the total: part may have been paid at the desk.
        card_attempts.charge(
            request_key=f"instalment:{pk}:{uuid.uuid4().hex}",
            purpose="instalment",
            patient=sold.patient,
            amount_minor=invoice.balance_minor,
            card=sold.card,
            allocations=[(invoice, invoice.balance_minor)],
            context={
                "pass_invoice": pk,
                "reference": f"{sold.name}: {what}",
                "on_session": on_session,
            },
        )
    except AuthenticationPending as exc:  # only on_session: the page completes the bank's check
        if run is not None:
            run.authenticate = exc
        return "authenticating"
    except (
        GatewayUnavailable
    ) as failure:  # maybe charged, maybe not: the next run asks the gateway first
        PassInvoice.objects.filter(pk=pk).update(last_error=failure.message[:200])
        return "unavailable"
    except (
        PaymentFailed
    ) as failure:  # soft: retried on the clinic's schedule; hard: a new card is needed
        return _declined(pk, today, failure)
    return "charged"


def _declined(pk: int, today: dt.date, failure) -> str:
    """A declined charge: counted and, by its kind, retried on the clinic's schedule or waiting for
    a new card (never retried when only the card holder can confirm it); passes.dunning."""
    decline_record(pk=pk, failure=failure, today=today)
    return "declined"


def _charged(attempt: CardAttempt, payment) -> None:
    """The pass invoice's charge is recorded (inline or by reconciliation):
    stop retrying, send the receipt."""
    row = PassInvoice.objects.select_related("sold_pass").get(pk=attempt.context["pass_invoice"])
    PassInvoice.objects.filter(pk=row.pk).update(
        next_attempt_on=None, last_error="", needs_new_card=False
    )
    if row.sold_pass.past_due_since is not None:
        past_due_refresh(row.sold_pass_id)
    pass_invoice_receipt_email(row=row, payment=payment)


# The purpose's name, "instalment", is stored on card attempts and in their request keys since
# before cycles were charged here too: it names every pass invoice's charge.
purpose_register(
    Purpose(name="instalment", reference="Automatic card payment", on_charged=_charged)
)


def _isolated(pk: int, step, today: dt.date):
    """One row's step; an unexpected error is written on the row
    (staff see it) and the job goes on."""
    try:
        return step(pk, today)
    except CarnetError as exc:
        PassInvoice.objects.filter(pk=pk).update(last_error=exc.message[:200])
    except Exception as exc:  # noqa: BLE001 - never let one row stop the clinic's daily job
        PassInvoice.objects.filter(pk=pk).update(last_error=f"Could not be charged: {exc}"[:200])
    return None


def pass_invoices_bill(*, today: dt.date | None = None) -> Run:
    """Invoice every due instalment (a payment plan's; cycles are cycle_billing's) once, then charge
    every pass invoice with a card on file that is due a try (instalments and cycles)."""
    today = today or clinic_today()
    run = Run()
    due = (
        PassInvoice.objects.filter(
            invoice__isnull=True,
            due_on__lte=today,
            sold_pass__status=Pass.Status.ACTIVE,
            sold_pass__kind=Pass.Kind.PACKAGE,
        )  # membership cycles: cycle_billing.cycles_issue
        .order_by("due_on", "pk")
        .values_list("pk", flat=True)
    )
    for pk in list(due):
        if _isolated(pk, _issue, today):
            run.issued.append(pk)
    to_charge = (
        PassInvoice.objects.filter(
            invoice__isnull=False,
            next_attempt_on__lte=today,
            sold_pass__card__isnull=False,
            sold_pass__status=Pass.Status.ACTIVE,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in list(to_charge):
        outcome = _isolated(pk, _charge, today)
        if outcome == "charged":
            run.charged.append(pk)
        elif outcome == "declined":
            run.declined.append(pk)
    return run


def pass_charge_due(
    *, sold_pass: Pass, today: dt.date | None = None, on_session: bool = False
) -> Run:
    """Charge what of one pass is due a card charge now (e.g. right after selling an automatic
    membership, so the front desk sees the first cycle paid). Call it outside any transaction,
    like the job: the same pass invoice keys make it safe to race the job. `on_session`: the patient
    is at the page (online sign-up): run.authenticate is a charge waiting for their bank's check."""
    today = today or clinic_today()
    run = Run()
    due = (
        PassInvoice.objects.filter(
            sold_pass=sold_pass, invoice__isnull=False, next_attempt_on__lte=today
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in list(due):
        outcome = _isolated(
            pk, lambda row, day: _charge(row, day, on_session=on_session, run=run), today
        )
        if outcome == "charged":
            run.charged.append(pk)
        elif outcome == "declined":
            run.declined.append(pk)
        elif (
            outcome == "authenticating"
        ):  # one bank check at a time: the page's return charges the next
            break
    return run
