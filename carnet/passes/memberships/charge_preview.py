"""Tomorrow's automatic charges (issue 22 point 8): what the daily job will charge to cards on file
on a given day, so staff can fix a card before it fails — a staff page, and an email to the
account owner each night when the clinic opts in (Settings → Clinic).

It reads what the job's two halves will do on `day` without writing anything:

- cycles and instalments already invoiced whose next try falls on or before `day` (retries after
  a decline, a cycle left for the job): the balance still owed, to the pass's card;
- membership cycles the job will invoice that day and charge at once in automatic mode: the cycle
  covering `day` (within the term and any cancellation), at the cycle price with the membership's
  taxes (a cycle row made ahead for a booking keeps the price it was made with); a paused cycle
  whose pause bills a freeze fee on it, at that fee with the same taxes, labelled as a freeze fee;
- payment-plan instalments falling due by `day` on a package with a card.

A plan change scheduled for `day` (applied by the job before it invoices) prices and dates the
cycle on the new plan's terms.

The test runs the job with the clock moved past midnight in the clinic's time zone and checks
that it charged exactly this list.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Prefetch

from carnet.clinic.models import Clinic
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core.mail import mail_queue
from carnet.core.permissions import AccessLevel
from carnet.passes.cycles import MAX_CYCLES_AHEAD, cycle_preview, cycle_start, freeze_fee_for
from carnet.passes.models import Pass, PassInvoice, PassPlanChange
from carnet.passes.redeeming.quotes import price_with_tax_minor
from carnet.people.models import StaffMember

from .cycle_billing import memberships_due

Status, Mode = Pass.Status, Pass.PaymentMode


@dataclass(frozen=True)
class PlannedCharge:
    sold_pass: Pass
    seq: int  # the cycle's or instalment's number
    what: str  # "Membership cycle 2026-06-01 to 2026-06-30", "Instalment 2 of 4"
    amount_minor: int
    retry: bool  # a declined charge tried again
    problem: str  # why the charge will fail as things stand ("" when nothing is known)

    @property
    def patient(self):
        return self.sold_pass.patient

    @property
    def card(self):
        return self.sold_pass.card


def _what(sold: Pass, seq: int, start: dt.date | None, end: dt.date | None, frozen: bool) -> str:
    if sold.kind == Pass.Kind.MEMBERSHIP:
        period = f"{start:%Y-%m-%d} to {end - dt.timedelta(days=1):%Y-%m-%d}"
        return (
            f"Freeze fee for the paused cycle {period}" if frozen else f"Membership cycle {period}"
        )
    return f"Instalment {seq} of {sold.instalments}"


def _problem(card, day: dt.date) -> str:
    if card.removed_at is not None:
        return (
            "The card was removed from file: the charge will fail. Choose another card on the "
            "membership."
        )
    if (card.exp_year, card.exp_month) < (day.year, day.month):
        return (
            f"The card expired ({card.exp_month:02d}/{card.exp_year}): it will be declined. "
            "Ask for a new card."
        )
    return ""


def _planned(
    sold: Pass,
    seq: int,
    start,
    end,
    amount: int,
    day: dt.date,
    *,
    retry: bool = False,
    frozen: bool = False,
) -> PlannedCharge:
    return PlannedCharge(
        sold_pass=sold,
        seq=seq,
        what=_what(sold, seq, start, end, frozen),
        amount_minor=amount,
        retry=retry,
        problem=_problem(sold.card, day),
    )


def _passes():
    return Pass.objects.select_related("patient", "card").prefetch_related("taxes")


def _issued(day: dt.date) -> list[PlannedCharge]:
    """Invoiced rows the job's charge step takes on `day` (charging.pass_invoices_bill)."""
    rows = (
        PassInvoice.objects.filter(
            invoice__isnull=False,
            invoice__deleted_at__isnull=True,
            next_attempt_on__lte=day,
            sold_pass__card__isnull=False,
            sold_pass__status=Status.ACTIVE,
        )
        .select_related("invoice")
        .prefetch_related(Prefetch("sold_pass", _passes()))
        .order_by("pk")
    )
    return [
        _planned(
            row.sold_pass,
            row.seq,
            row.period_start,
            row.period_end,
            row.invoice.balance_minor,
            day,
            retry=row.charge_attempts > 0,
            frozen=row.skipped,
        )
        for row in rows
        if row.invoice.balance_minor > 0
    ]


def _after_change(sold: Pass, template, day: dt.date) -> PlannedCharge | None:
    """The cycle covering `day` once a plan change scheduled by then is applied (the job applies it
    before invoicing: plan_change.plan_changes_apply): the cycles not invoiced yet are made again on
    the new plan's terms from the first of them, a new cycle length counted from its start."""
    rows = sorted(sold.pass_invoices.all(), key=lambda r: r.seq)
    invoiced = [r for r in rows if r.invoice_id]
    first = (invoiced[-1].seq if invoiced else 0) + 1
    view = copy.copy(sold)
    if template.cycle != sold.cycle:
        view.anchor_date, view.anchor_index = cycle_start(sold, first - 1), first - 1
    view.cycle = template.cycle
    billed = sum(1 for r in invoiced if not r.skipped)
    term = None if template.term_cycles is None else billed + template.term_cycles
    paused = [(p.from_seq, p.from_seq + p.cycles) for p in sold.pauses.all()]
    for seq in range(first, first + MAX_CYCLES_AHEAD):
        start, end = cycle_start(view, seq - 1), cycle_start(view, seq)
        skipped = any(a <= seq < b for a, b in paused)
        if start > day or term is not None and billed >= term:
            return None
        if day < end:  # a frozen cycle bills its pause's freeze fee, taxed on the new plan's terms
            fee = freeze_fee_for(sold, seq) if skipped else template.price_minor
            return (
                _planned(
                    sold, seq, start, end, price_with_tax_minor(template, fee), day, frozen=skipped
                )
                if fee or not skipped
                else None
            )
        billed += 0 if skipped else 1
    return None


def _cycles(day: dt.date) -> list[PlannedCharge]:
    """Cycles the job invoices on `day` and charges at once:
    the one covering `day` (cycle_billing)."""
    out = []
    memberships = (
        _passes()
        .filter(pk__in=memberships_due(day), payment_mode=Mode.AUTOMATIC, card__isnull=False)
        .prefetch_related("pass_invoices", "pauses")
        .order_by("pk")
    )
    changes = {
        c.sold_pass_id: c.to_template
        for c in PassPlanChange.objects.filter(
            status=PassPlanChange.Status.SCHEDULED,
            effective_on__lte=day,
            sold_pass__in=memberships,
            sold_pass__ends_after__isnull=True,
        )
        .select_related("to_template")
        .prefetch_related("to_template__taxes")
    }
    for sold in memberships:
        if sold.pk in changes:
            planned = _after_change(sold, changes[sold.pk], day)
            out += [planned] if planned else []
            continue
        state, row, _left = cycle_preview(sold, day)
        if state not in ("ok", "paused"):
            continue
        frozen = (
            state == "paused"
        )  # billed its pause's freeze fee, if any, like a cycle (issue 22 point 7)
        if row is not None:
            # Made ahead for a booking, at the price (or freeze fee) of then; a frozen one with no
            # fee is never invoiced.
            if row.invoice_id is None and (row.unit_price_minor or not frozen):
                out.append(
                    _planned(
                        sold,
                        row.seq,
                        row.period_start,
                        row.period_end,
                        price_with_tax_minor(sold, row.unit_price_minor),
                        day,
                        frozen=frozen,
                    )
                )
            continue
        index = len(
            sold.pass_invoices.all()
        )  # cycles are made in order: the first one not made yet
        while cycle_start(sold, index + 1) <= day:
            index += 1
        price = freeze_fee_for(sold, index + 1) if frozen else sold.cycle_price_minor
        if price or not frozen:
            out.append(
                _planned(
                    sold,
                    index + 1,
                    cycle_start(sold, index),
                    cycle_start(sold, index + 1),
                    price_with_tax_minor(sold, price),
                    day,
                    frozen=frozen,
                )
            )
    return out


def _instalments(day: dt.date) -> list[PlannedCharge]:
    """Payment-plan instalments the job invoices by `day` and charges to the package's card."""
    rows = (
        PassInvoice.objects.filter(
            invoice__isnull=True,
            due_on__lte=day,
            sold_pass__status=Status.ACTIVE,
            sold_pass__kind=Pass.Kind.PACKAGE,
            sold_pass__card__isnull=False,
        )
        .prefetch_related(Prefetch("sold_pass", _passes()))
        .order_by("pk")
    )
    return [
        _planned(
            row.sold_pass,
            row.seq,
            None,
            None,
            price_with_tax_minor(row.sold_pass, row.unit_price_minor),
            day,
        )
        for row in rows
    ]


def charges_preview(*, day: dt.date | None = None) -> list[PlannedCharge]:
    """The card charges the daily job will make on `day` (default: tomorrow in the clinic's time
    zone), as things stand now; patients by name."""
    day = day or clinic_today() + dt.timedelta(days=1)
    planned = _issued(day) + _cycles(day) + _instalments(day)
    return sorted(
        planned,
        key=lambda p: (
            p.patient.last_name.lower(),
            p.patient.first_name.lower(),
            p.sold_pass.pk,
            p.seq,
        ),
    )


def charges_preview_email_send(*, today: dt.date | None = None) -> int:
    """The daily job: when the clinic opts in, email the account owner tomorrow's charges, once per
    day however often the job runs (a conditional update claims the day).
    Returns the charges listed."""

    clinic = clinic_get()
    if not clinic.charges_preview_email:
        return 0
    today = today or clinic_today(clinic)
    day = today + dt.timedelta(days=1)
    planned = charges_preview(day=day)
    owners = sorted(
        {
            s.user.email
            for s in StaffMember.objects.filter(
                access_level=AccessLevel.ACCOUNT_OWNER, is_active=True
            ).select_related("user")
            if s.user.email
        }
    )
    to = owners or ([clinic.email] if clinic.email else [])
    if not planned or not to:
        return 0
    with transaction.atomic():
        if (
            not Clinic.objects.filter(pk=clinic.pk)
            .exclude(charges_preview_sent_for=day)
            .update(charges_preview_sent_for=day)
        ):
            return 0  # another run sent it
        total = sum(p.amount_minor for p in planned)
        mail_queue(
            to=to,
            subject=f"Tomorrow's automatic charges ({day:%Y-%m-%d}): {len(planned)}, "
            f"{clinic.money(total)} — {clinic.name}",
            template="passes/email/charges_preview.txt",
            context={
                "clinic": clinic,
                "day": day,
                "total": clinic.money(total),
                "rows": [(p, clinic.money(p.amount_minor)) for p in planned],
                "problems": sum(1 for p in planned if p.problem),
            },
        )
    return len(planned)
