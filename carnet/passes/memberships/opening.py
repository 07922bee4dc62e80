"""Memberships brought in mid-term from the clinic's previous system (SPEC 15).

The file gives each membership's start date and the date its next cycle is due. The cycle running
until then was invoiced and paid in the previous system: it comes in as Carnet's first cycle (an
invoice for the cycle price with a "Paid before the switch" payment applied), with the uses taken
in it already counted off its allowance. Its part not yet earned at the cut-over is deferred
revenue – memberships against opening balance equity, and the daily job earns the rest day by day
as for any cycle. Carnet then invoices the next cycle on the next cycle date, as for a membership
sold in Carnet.

Cycles are counted from the start of that current cycle (`start_date`), the original start date
kept as the purchase date; a template's term is what is left of it. Automatic payment without a
card on file waits for one: no charge is scheduled until the card is chosen on the membership.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from django.db.models import Sum

from carnet.billing.opening import Bill, bills_close, bills_in_use, bills_open
from carnet.billing.tax import line_amounts
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, bulk
from carnet.core.undo import imported_rows_remove
from carnet.ledger import accounts
from carnet.ledger.models import Posting
from carnet.ledger.services import Entry, Line, transaction_post, transactions_post_many
from carnet.passes.cycles import cycle_earned_minor, cycle_start
from carnet.passes.models import Pass, PassInvoice, PassItem, PassTemplate, Redemption
from carnet.passes.selectors import imported_invoices
from carnet.passes.terms import items_copy

from .services import membership_copy

MAX_CYCLES_BACK = 52 * 40  # forty years of weekly cycles: a next cycle date further out is a typo


@dataclass(frozen=True)
class Current:
    """Where a membership stands: its current cycle [start, end), the number of that cycle (1 =
    the first), or `problem` saying why the dates do not fit the template's cycle."""

    start: dt.date | None = None
    end: dt.date | None = None
    number: int = 0
    problem: str = ""


def current_cycle(template: PassTemplate, *, start_date: dt.date, next_cycle: dt.date) -> Current:
    """The cycle that ends on `next_cycle`, counting the template's cycles from `start_date`."""
    if next_cycle <= start_date:
        return Current(
            problem=(
                f"The next cycle date ({next_cycle}) must be after the start date ({start_date})."
            )
        )
    grid = SimpleNamespace(cycle=template.cycle, start_date=start_date)
    previous = start_date
    for number in range(1, MAX_CYCLES_BACK):
        boundary = cycle_start(grid, number)
        if boundary == next_cycle:
            break
        if boundary > next_cycle:
            return Current(
                problem=(
                    f"{next_cycle} is not the start of a {template.get_cycle_display().lower()} "
                    f"cycle counted from {start_date}: the cycle around it runs {previous} to "
                    f"{boundary}. Give one of those as the next cycle date."
                )
            )
        previous = boundary
    else:
        return Current(
            problem=f"The next cycle date ({next_cycle}) is too far after the start date."
        )
    # Carnet counts the cycles from the current one's start; the day of the month must
    # lead to the same date.
    again = cycle_start(SimpleNamespace(cycle=template.cycle, start_date=previous), 1)
    if again != next_cycle:
        return Current(
            problem=(
                f"Carnet counts the cycles from the current one's start ({previous}), "
                f"so the next would start on {again}, not {next_cycle}. Give {again} as the next "
                "cycle date."
            )
        )
    if template.term_cycles is not None and number > template.term_cycles:
        return Current(
            problem=(
                f"“{template.name}” runs {template.term_cycles} cycles: its term is over before "
                f"{next_cycle}. Leave it out of the import."
            )
        )
    return Current(start=previous, end=next_cycle, number=number)


@dataclass(frozen=True)
class Opening:
    patient_id: int
    template: PassTemplate
    start_date: dt.date  # as in the previous system
    current: Current
    uses_taken: int  # in the current cycle
    cycle_price_minor: int  # the line price, before any exclusive tax
    payment_mode: str


def memberships_open(
    *, actor, openings: list[Opening], at: dt.datetime, cut_over: dt.date, memo: str, zone: str
) -> list[tuple[Pass, int | None]]:
    """Create the memberships and their paid current cycle (inside the caller's transaction) and
    post each one's unearned part. Returns (pass, journal transaction id or None), in order."""
    clinic = clinic_get()
    passes, cycles, bills = [], [], []
    for o in openings:
        sold, row, bill = _membership_at_switch(
            o, actor=actor, clinic=clinic, cut_over=cut_over, zone=zone
        )
        passes.append(sold)
        cycles.append(row)
        bills.append(bill)
    passes = bulk.insert(Pass, passes)
    for sold, o in zip(passes, openings):
        sold.taxes.set(o.template.taxes.all())
    bulk.insert(
        PassItem,
        [
            item
            for sold, o in zip(passes, openings)
            for item in items_copy(sold, o.template.items.all())
        ],
    )
    invoices = bills_open(actor=actor, bills=bills, invoice_date=cut_over, at=at, memo=memo)
    for sold, row, invoice in zip(passes, cycles, invoices):
        row.sold_pass, row.invoice = sold, invoice
    bulk.insert(PassInvoice, cycles)
    by_pass = _unearned_post(passes, cycles, at=at, memo=memo)
    activity.record_many(actor=actor, verb="imported", objs=passes)
    return [(sold, by_pass.get(sold.pk)) for sold in passes]


def _membership_at_switch(o: Opening, *, actor, clinic, cut_over: dt.date, zone: str):
    """(the membership, its current cycle, the bill for that cycle), not saved: the cycle paid
    before the switch, the part of it earned before the cut-over recognised."""
    t = o.template
    taxes = list(t.taxes.all())
    amounts = line_amounts(
        gross=o.cycle_price_minor,
        rates=[x.rate for x in taxes],
        inclusive=t.tax_inclusive,
        currency=clinic.currency,
    )
    sold = membership_copy(
        t,
        patient_id=o.patient_id,
        actor=actor,
        start_date=o.current.start,
        purchase_date=o.start_date,
        purchased_at=dt.datetime.combine(o.start_date, dt.time(12), ZoneInfo(zone)),
        payment_mode=o.payment_mode,
        term_cycles=None if t.term_cycles is None else t.term_cycles - (o.current.number - 1),
        price_minor=o.cycle_price_minor,
        cycle_price_minor=o.cycle_price_minor,
        deferred_minor=amounts.net,
        clinic=clinic,
    )
    row = PassInvoice(
        seq=1,
        due_on=o.current.start,
        period_start=o.current.start,
        period_end=o.current.end,
        unit_price_minor=o.cycle_price_minor,
        amount_minor=amounts.total,
        net_minor=amounts.net,
        uses_allowed=None if t.uses_per_cycle is None else t.uses_per_cycle - o.uses_taken,
    )
    # Earned before the switch, in the previous system.
    row.recognised_minor = cycle_earned_minor(row, cut_over)
    sold.recognised_minor = row.recognised_minor
    bill = Bill(
        patient_id=o.patient_id,
        kind=Pass.Kind.MEMBERSHIP,
        income_category_id=t.income_category_id,
        description=f"{t.name} — {o.current.start:%Y-%m-%d} to "
        f"{o.current.end - dt.timedelta(days=1):%Y-%m-%d}",
        total_minor=amounts.total,
        net_minor=amounts.net,
        paid_minor=amounts.total,
    )
    return sold, row, bill


def _unearned_post(passes: list[Pass], cycles: list[PassInvoice], *, at, memo: str) -> dict:
    """The current cycles' unearned part as opening balances: pass id -> journal transaction id."""
    unearned = [
        (sold, row.net_minor - row.recognised_minor)
        for sold, row in zip(passes, cycles)
        if row.net_minor > row.recognised_minor
    ]
    txns = transactions_post_many(
        [
            Entry(
                kind="opening_balance",
                source=sold,
                at=at,
                memo=f"{memo}: {sold.name}, current cycle unearned",
                lines=[
                    Line(accounts.OPENING_BALANCE_EQUITY, debit=amount),
                    Line(accounts.DEFERRED_MEMBERSHIPS, credit=amount),
                ],
            )
            for sold, amount in unearned
        ]
    )
    return {sold.pk: t.pk for (sold, _), t in zip(unearned, txns)}


def memberships_in_use(pks: list[int]) -> list[str]:
    """Why these imported memberships can no longer be undone: used, billed again, or changed."""
    problems = bills_in_use(imported_invoices(pks))
    for part in bulk.chunks(pks):
        for sold in Pass.objects.filter(pk__in=part).order_by("pk"):
            label = f"{sold.name} of patient #{sold.patient_id} (membership #{sold.pk})"
            if sold.status != Pass.Status.ACTIVE:
                problems.append(f"{label} is {sold.get_status_display().lower()}")
            elif Redemption.objects.filter(sold_pass=sold).exists():
                problems.append(f"{label} has been used")
            elif sold.pass_invoices.count() != 1 or sold.pauses.exists():
                problems.append(f"{label} has been billed or paused in Carnet since")
    return problems


def memberships_close(*, actor, pks: list[int]) -> None:
    """Undo imported memberships (caller's transaction; the caller reverses the opening balances),
    refused with the reasons if any has been used. What the daily job earned of the current cycle
    since the import goes back from revenue to deferred revenue first, so the opening balance's
    reversal leaves nothing behind."""
    invoices = imported_invoices(pks)
    problems = memberships_in_use(pks)
    if not problems:
        _unearn(pks)
    imported_rows_remove(
        actor=actor,
        model=Pass,
        pks=pks,
        in_use=memberships_in_use,
        children=((PassItem, "sold_pass_id"), (PassInvoice, "sold_pass_id")),
    )
    bills_close(actor=actor, invoice_pks=invoices)


def _unearn(pks: list[int]) -> None:
    for part in bulk.chunks(pks):
        opened = dict(
            Posting.objects.filter(
                transaction__kind="opening_balance",
                transaction__source_type="passes.pass",
                transaction__source_id__in=[str(pk) for pk in part],
                account__code=accounts.DEFERRED_MEMBERSHIPS,
            )
            .values("transaction__source_id")
            .annotate(total=Sum("amount"))
            .values_list("transaction__source_id", "total")
        )
        for sold in Pass.objects.filter(pk__in=part).order_by("pk"):
            earned = -int(opened.get(str(sold.pk), 0)) - (
                sold.deferred_minor - sold.recognised_minor
            )
            if earned > 0:
                transaction_post(
                    kind="membership_recognition_reversed",
                    source=sold,
                    memo=f"Undo of an import: {sold.name}, fees earned since taken back",
                    lines=[
                        Line(accounts.revenue(sold.income_category_id), debit=earned),
                        Line(accounts.DEFERRED_MEMBERSHIPS, credit=earned),
                    ],
                )
