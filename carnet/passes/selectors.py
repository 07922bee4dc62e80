"""Reads about passes: what is paid, what is left, a patient's passes."""

from __future__ import annotations

import datetime as dt

from django.db.models import Exists, F, OuterRef, Prefetch, Q

from carnet.billing.models import Invoice
from carnet.core import bulk, statements
from carnet.ledger.selectors import postings_for_source

from .models import Pass, PassInvoice, PassTemplate, Redemption, value_left_expression

LIVE = (Redemption.Status.RESERVED, Redemption.Status.POSTED)


def appointments_with_cover(appointments):
    """Annotate `covered`: some row has a live (reserved or used) pass redemption. One subquery,
    so the schedule grid's package icon costs no query per appointment."""
    return appointments.annotate(
        covered=Exists(
            Redemption.objects.filter(visit__appointment=OuterRef("pk"), status__in=LIVE)
        )
    )


def pass_paid_minor(sold: Pass) -> int:
    """What has been paid on the pass's issued pass invoices (tax included)."""
    rows = [r.invoice for r in sold.pass_invoices.all() if r.invoice_id]
    return sum(min(i.applied_minor, i.total_minor) for i in rows if not i.deleted_at)


def pass_fully_paid(sold: Pass) -> bool:
    if sold.price_minor == 0 or sold.transferred_from_id:
        return True
    rows = list(sold.pass_invoices.all())
    issued = [r for r in rows if r.invoice_id and not r.invoice.deleted_at]
    return len(issued) == len(rows) and all(
        r.invoice.applied_minor >= r.invoice.total_minor for r in issued
    )


def pass_unlocked(sold: Pass) -> int:
    """Uses the patient may take: all of them once paid; none before (SPEC 5.2); with a payment
    plan, in proportion to what has been paid (SPEC 9.6)."""
    if sold.quantity is None:
        return 0
    if pass_fully_paid(sold):
        return sold.quantity
    if sold.instalments <= 1:
        return 0
    return sold.quantity * pass_paid_minor(sold) // sold.price_minor


def pass_invoices(sold: Pass) -> list[Invoice]:
    return [r.invoice for r in sold.pass_invoices.select_related("invoice") if r.invoice_id]


def pass_imported(sold: Pass) -> bool:
    """Brought in from the clinic's previous system (carnet.imports):
    its value is an opening balance."""

    return postings_for_source(sold).filter(transaction__kind="opening_balance").exists()


def imported_invoices(pks: list[int]) -> list[int]:
    """The invoices of these imported passes (partly paid packages, memberships' current cycles)."""
    return [
        i
        for part in bulk.chunks(pks)
        for i in PassInvoice.objects.filter(
            sold_pass_id__in=part, invoice__isnull=False
        ).values_list("invoice_id", flat=True)
    ]


def pass_collected_minor(sold: Pass) -> int:
    """Money the patient actually paid for this pass (the refund override's ceiling, SPEC 5.4). A
    package imported paid in full has no invoice in Carnet: its price was collected before the
    switch (its remaining value, when the file did not know the price)."""
    invoices = pass_invoices(sold)
    if (
        not invoices
        and sold.kind == Pass.Kind.PACKAGE
        and not sold.transferred_from_id
        and pass_imported(sold)
    ):
        return sold.net_minor
    return sum(i.applied_minor for i in invoices if not i.deleted_at)


def passes_for_patient(patient, *, include_ended: bool = True):
    qs = (
        Pass.objects.filter(patient=patient)
        .exclude(status=Pass.Status.DELETED)
        .select_related("income_category", "patient")
        .prefetch_related(
            "items__treatment",
            "shares__patient",
            "pauses",
            Prefetch("pass_invoices", queryset=PassInvoice.objects.select_related("invoice")),
        )
    )
    if not include_ended:
        qs = qs.filter(status=Pass.Status.ACTIVE)
    return qs


def passes_usable_by(patient):
    """Active passes the patient owns or that a family member shares with them."""
    return (
        Pass.objects.filter(status=Pass.Status.ACTIVE)
        .filter(Q(patient=patient) | Q(family_sharing=True, shares__patient=patient))
        .distinct()
        .prefetch_related(
            "items",
            "shares",
            Prefetch("pass_invoices", queryset=PassInvoice.objects.select_related("invoice")),
        )
    )


def _live(visit: int):
    """A visit's live use with what posting and the pages read of it."""
    return Redemption.objects.filter(visit_id=visit, status__in=LIVE).select_related(
        "sold_pass", "item__treatment"
    )


# Compiled once per process (core.statements): attach asks it, and the pages.
_LIVE_REDEMPTION = statements.select(lambda visit: _live(visit)[:1], visit=int)


def visit_redemption(visit) -> Redemption | None:
    """The live (reserved or posted) redemption of one visit, if a pass covers it. At most one is
    live per visit (a unique constraint): no ORDER BY to compile, as `.first()` would add."""
    return _LIVE_REDEMPTION.get_or_none(visit=visit.pk)


# The same read with its pass locked (FOR UPDATE of the pass's row only), for arrival and no-shows,
# which post the use: one statement instead of this read and then the pass's lock.
_LIVE_REDEMPTION_LOCKED = statements.select(
    lambda visit: _live(visit).select_for_update(of=("sold_pass",))[:1], visit=int
)


def visit_redemption_locked(visit) -> Redemption | None:
    """`visit_redemption` with its pass under lock (the project's order: invoice → pass; the
    caller holds no pass lock yet). PostgreSQL re-reads only the locked row when it had to wait
    for it: the redemption's own columns may then be as they were before the wait, which is why
    posting is a conditional UPDATE on its status (redemption_post), refused if it moved."""
    return _LIVE_REDEMPTION_LOCKED.get_or_none(visit=visit.pk)


def pass_uses(sold: Pass):
    """A pass's uses (redemptions), newest first, with what their pages and API show (one query)."""
    return sold.redemptions.select_related(
        "visit__appointment__treatment",
        "visit__appointment__practitioner",
        "patient",
        "item__treatment",
        "practitioner",
        "cycle",
        "sold_pass",
    ).order_by("-reserved_at", "-pk")


def pass_history(sold: Pass) -> list[dict]:
    """Each use with its appointment, treatment and practitioner, for the pass pages."""
    uses = pass_uses(sold)
    return [
        {
            "r": r,
            "appointment": r.visit.appointment,
            "treatment": r.item.treatment if r.item_id else r.visit.appointment.treatment,
            "practitioner": r.practitioner or r.visit.appointment.practitioner,
        }
        for r in uses
    ]


def pass_next_instalment(sold: Pass) -> PassInvoice | None:
    """A payment plan's first instalment not paid in full yet (issued or still to come), or None."""
    for row in sorted(sold.pass_invoices.all(), key=lambda r: r.seq):
        invoice = row.invoice if row.invoice_id else None
        if invoice is None or (
            not invoice.deleted_at and invoice.applied_minor < invoice.total_minor
        ):
            return row
    return None


def _with_remaining(qs):

    return qs.annotate(
        uses_left=F("quantity")
        - F("reserved_count")
        - F("posted_count")
        - F("forfeited_count")
        - F("used_before_import"),
        value_left_now=value_left_expression(),
    )


def passes_expiring(*, today, within_days: int = 30, limit: int = 20) -> list[Pass]:
    """Active passes whose last covered day falls within `within_days` of `today` and that still
    have uses left (unlimited ones count), soonest first, with their patient. One query."""

    qs = _with_remaining(
        Pass.objects.filter(
            status=Pass.Status.ACTIVE,
            expires_on__gte=today,
            expires_on__lte=today + dt.timedelta(days=within_days),
        )
    )
    qs = qs.filter(
        Q(quantity__isnull=True, face_value_minor__isnull=True)
        | Q(uses_left__gt=0)
        | Q(value_left_now__gt=0)
    ).select_related("patient")
    return list(qs.order_by("expires_on", "pk")[:limit])


def passes_running_low(*, patient_ids: list[int], at_most: int = 1) -> list[Pass]:
    """Active packages of these patients with `at_most` uses left or fewer (a renewal to offer at
    the desk), fewest left first. One query."""
    qs = _with_remaining(
        Pass.objects.filter(
            status=Pass.Status.ACTIVE,
            kind=Pass.Kind.PACKAGE,
            quantity__isnull=False,
            patient_id__in=patient_ids,
        )
    )
    return list(
        qs.filter(uses_left__lte=at_most)
        .select_related("patient")
        .order_by("uses_left", "patient_id", "pk")
    )


def autopay_declined(*, limit: int = 20) -> list[PassInvoice]:
    """Instalments and membership cycles whose card charge was declined and whose invoice is still
    unpaid, most recent due date first. One query."""

    qs = (
        PassInvoice.objects.filter(
            charge_attempts__gt=0,
            invoice__isnull=False,
            invoice__deleted_at__isnull=True,
            invoice__applied_minor__lt=F("invoice__total_minor"),
        )
        .exclude(last_error="")
        .select_related("invoice", "sold_pass__patient")
    )
    return list(qs.order_by("-due_on", "-pk")[:limit])


def templates_covering(treatment) -> list:
    """Packages on sale (not archived) whose eligible items include `treatment`: what the desk may
    sell to cover a visit for it. One query."""

    return list(
        PassTemplate.objects.filter(
            kind=PassTemplate.Kind.PACKAGE, archived=False, items__treatment=treatment
        )
        .distinct()
        .order_by("name", "pk")
    )
