"""Membership cycles (SPEC 6.2, 9.7): when each cycle runs, making its row once, and recognising
its fee ratably by day.

Cycle n (0-based, pauses included) starts at the start date + n weeks / months / years, counted
from the start date each time so 31 January gives 28 (29) February, then 31 March. A cycle row
is made once — by the billing job when it is due, or earlier when a booking in it needs its use
count — under the pass's lock and a unique (pass, seq) constraint. A paused cycle is a skipped
row: never invoiced, it does not count toward the term, so the end moves out.

At the passes root: redeeming (a use's cycle), setup (updating sold memberships), packages (charging
a cycle) and memberships all count in cycles, and memberships sits above them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import transaction
from django.db.models import F

from carnet.clinic.selectors import clinic_today
from carnet.core.bulk import add_to
from carnet.core.clock import add_months
from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post
from carnet.passes.models import Cycle, Pass, PassInvoice, PassTemplate

MAX_CYCLES_AHEAD = 60  # a booking may reserve a use at most this many cycles ahead


def cycle_start(sold: Pass, index: int) -> dt.date:
    """Cycle `index` (0-based) counted from the start date, or from the anchor a plan change set."""
    anchor = getattr(sold, "anchor_date", None)
    base, n = (anchor, index - sold.anchor_index) if anchor else (sold.start_date, index)
    return cycle_add(sold.cycle, base, n)


def cycle_add(cycle: str, day: dt.date, n: int) -> dt.date:
    if cycle == Cycle.WEEKLY:
        return day + dt.timedelta(weeks=n)
    return add_months(day, n * (12 if cycle == Cycle.YEARLY else 1))


def cycle_paused(sold: Pass, seq: int) -> bool:
    return _pause_of(sold, seq) is not None


def _pause_of(sold: Pass, seq: int):
    return next((p for p in sold.pauses.all() if p.from_seq <= seq < p.from_seq + p.cycles), None)


def freeze_fee_for(sold: Pass, seq: int) -> int:
    """The freeze fee billed on cycle `seq`: 0 when it is not paused or its pause
    bills nothing there."""
    pause = _pause_of(sold, seq)
    return pause.fee_for(seq) if pause is not None else 0


def billed_cycles(sold: Pass) -> int:
    return sold.pass_invoices.filter(skipped=False, invoice__isnull=False).count()


def next_row_needed(sold: Pass, rows: list[PassInvoice]) -> tuple[int, dt.date] | None:
    """(seq, start) of the next cycle row, or None when the term or a cancellation ends it."""
    return next_cycle(sold, made=len(rows), billed=sum(1 for r in rows if not r.skipped))


def next_cycle(sold: Pass, *, made: int, billed: int) -> tuple[int, dt.date] | None:
    """next_row_needed from counts: `made` cycle rows, `billed` of them not paused."""
    seq = made + 1
    start = cycle_start(sold, seq - 1)
    if sold.ends_after is not None and start > sold.ends_after:
        return None
    if sold.term_cycles is not None and billed >= sold.term_cycles:
        return None
    return seq, start


def row_new(sold: Pass, seq: int, start: dt.date, *, rolled: int = 0) -> PassInvoice:
    """Cycle `seq` of `sold`, not saved and not invoiced; `rolled` uses come from
    the previous cycle."""
    pause = _pause_of(sold, seq)
    skipped = pause is not None
    allowed = (
        sold.uses_per_cycle
    )  # rollover is added when the previous cycle is over (memberships.rollover)
    # A frozen cycle is billed only its freeze fee, if any (issue 22 point 7).
    return PassInvoice(
        sold_pass=sold,
        seq=seq,
        due_on=start,
        period_start=start,
        period_end=cycle_start(sold, seq),
        unit_price_minor=pause.fee_for(seq) if skipped else sold.cycle_price_minor,
        amount_minor=0,
        net_minor=0,
        uses_allowed=0 if skipped else None if allowed is None else allowed + rolled,
        skipped=skipped,
    )


def row_make(sold: Pass, *, starting_by: dt.date | None = None) -> PassInvoice | None:
    """Make the next cycle row (the caller holds the pass's lock), unless the term is over or it
    starts after `starting_by`. Not invoiced here."""
    rows = list(sold.pass_invoices.order_by("seq"))
    needed = next_row_needed(sold, rows)
    if needed is None or starting_by is not None and needed[1] > starting_by:
        return None
    row = row_new(sold, *needed)
    row.save(force_insert=True)
    return row


def cycle_for(sold: Pass, day: dt.date, *, create: bool) -> PassInvoice | None:
    """The cycle row covering `day`, made (with those before it) if `create` and
    still in the term."""
    found = sold.pass_invoices.filter(period_start__lte=day, period_end__gt=day).first()
    if found is not None or not create or sold.start_date is None or day < sold.start_date:
        return found
    for _ in range(MAX_CYCLES_AHEAD):
        row = row_make(sold)
        if row is None:
            return None
        if row.period_start <= day < row.period_end:
            return row
    return None


def cycle_earned_minor(row: PassInvoice, today: dt.date) -> int:
    """What of the cycle's net fee belongs to the days before `today`."""
    days = (row.period_end - row.period_start).days
    elapsed = min(max((today - row.period_start).days, 0), days)
    return row.net_minor if elapsed >= days else row.net_minor * elapsed // days


@transaction.atomic
def memberships_recognise(*, today: dt.date | None = None) -> int:
    """Move each invoiced cycle's fee from deferred revenue to revenue day by day (SPEC 3.5): one
    journal transaction per membership template per run (its source, so the roll-forward shows the
    fee under its template), one line per income category. Idempotent: what was already recognised
    is subtracted. Returns the amount recognised."""

    today = today or clinic_today()
    rows = (
        PassInvoice.objects.select_for_update(of=("self",))
        .filter(
            sold_pass__kind="membership",
            invoice__isnull=False,
            invoice__deleted_at__isnull=True,
            period_start__lt=today,
            recognised_minor__lt=F("net_minor"),
        )
        .select_related("sold_pass")
        .order_by("pk")
    )
    by_template: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    by_row, by_pass, total = [], defaultdict(int), 0
    for row in rows:
        due = cycle_earned_minor(row, today) - row.recognised_minor
        if due <= 0:
            continue
        by_row.append((row.pk, due))
        by_template[row.sold_pass.template_id][row.sold_pass.income_category_id] += due
        by_pass[row.sold_pass_id] += due
        total += due
    add_to(
        PassInvoice, "recognised_minor", by_row
    )  # alike cycles earn alike amounts: few statements
    add_to(Pass, "recognised_minor", by_pass.items())
    for template in PassTemplate.objects.filter(pk__in=by_template).order_by("pk"):
        by_category = by_template[template.pk]
        transaction_post(
            kind="membership_recognised",
            source=template,
            memo=f"{template.name}: membership fees earned to {today}",
            lines=[
                Line(accounts.DEFERRED_MEMBERSHIPS, debit=sum(by_category.values())),
                *[
                    Line(accounts.revenue(cat), credit=amount)
                    for cat, amount in sorted(by_category.items())
                ],
            ],
        )
    return total


def cycle_preview(sold: Pass, day: dt.date) -> tuple[str, PassInvoice | None, int | None]:
    """Without writing anything: ("ok" | "not_started" | "paused" | "ended", the existing row if
    any, uses left in that cycle (None = unlimited))."""
    if sold.start_date is None or day < sold.start_date:
        return "not_started", None, None
    if sold.ends_after is not None and day > sold.ends_after:
        return "ended", None, None
    rows = list(sold.pass_invoices.all())
    for row in rows:
        if row.period_start <= day < row.period_end:
            if row.skipped:
                return "paused", row, 0
            left = None if row.uses_allowed is None else row.uses_allowed - row.used_count
            return "ok", row, left
    # A cycle not made yet: walk the timeline as row_make would.
    seq, billed = len(rows), sum(1 for r in rows if not r.skipped)
    for _ in range(MAX_CYCLES_AHEAD):
        seq += 1
        if sold.term_cycles is not None and billed >= sold.term_cycles:
            return "ended", None, None
        start, end = cycle_start(sold, seq - 1), cycle_start(sold, seq)
        paused = cycle_paused(sold, seq)
        if start <= day < end:
            return ("paused", None, 0) if paused else ("ok", None, sold.uses_per_cycle)
        billed += 0 if paused else 1
    return "ended", None, None
