"""What scheduling asks of passes (scheduling.coverage.ASKS): each step of a visit's life (book,
arrive, no-show, cancel, reschedule, copy) and what the desk's pages show. Passes build on
scheduling, so scheduling never imports this module: passes registers it with scheduling when it
loads (passes.apps)."""

from __future__ import annotations

import datetime as dt

from carnet.core.errors import Conflict
from carnet.passes.models import Pass, Redemption
from carnet.passes.selectors import appointments_with_cover as with_cover
from carnet.passes.selectors import visit_redemption, visit_redemption_locked

from .eligibility import REASONS, UNPAID_WARNING
from .quotes import price_with_tax_minor, visit_quote
from .redemption import (
    check_pass,
    covered_line,
    explain,
    may_use_passes,
    move_cycle,
    pass_attach,
    pass_remove,
    redemption_post,
    redemption_unpost,
    redemption_void,
)
from .windows import window_refusal

# What scheduling asks (scheduling.coverage.ASKS), whether defined here or answered by another
# module of passes.
__all__ = [
    "AUTO",
    "after_booking",
    "reservation",
    "line_for",
    "billed",
    "unbilled",
    "voided",
    "check_move",
    "carry_over",
    "Pass",
    "visit_quote",
    "price_with_tax_minor",
    "visit_redemption",
    "pass_attach",
    "pass_remove",
    "explain",
    "UNPAID_WARNING",
    "with_cover",
]

AUTO = "auto"


def after_booking(*, actor, appointment, choice=AUTO, online: bool = False, visits=None) -> None:
    """Attach passes to a new booking: `choice` is "auto" (auto-select, SPEC 5.3), a Pass (for the
    individual patient or the group's primary), or None. Staff without billing access book
    without passes; an explicitly chosen pass that cannot cover the visit is refused."""
    if choice is None:
        return
    visits = list(visits if visits is not None else appointment.visits.order_by("booked_at", "pk"))
    if choice == AUTO:
        if not may_use_passes(actor, online=online):
            return
        for visit in visits:
            if visit.role != visit.Role.SECONDARY:
                pass_attach(actor=actor, visit=visit, online=online)
        return
    first = next(r for r in visits if r.role != r.Role.SECONDARY)
    pass_attach(actor=actor, visit=first, sold_pass=choice, online=online)


def reservation(visit) -> Redemption | None:
    """The use a pass reserved for this visit, if any, read with its pass under lock (read once:
    arrival prices the line with it, then posts it, `billed`, under that lock). Called inside the
    caller's transaction."""
    live = visit_redemption_locked(visit)
    if live is None or live.status != Redemption.Status.RESERVED:
        return None
    live.visit = visit  # the caller's visit, so posting reads no more
    return live


def line_for(reserved: Redemption | None, line):
    """The arrival (or no-show) invoice line: covered if a pass reserved a use for the visit."""
    return covered_line(reserved, line) if reserved is not None else line


def billed(reserved: Redemption | None, *, by_no_show: bool = False) -> None:
    """The visit is billed: post its reserved use (`reservation`'s, its pass locked with it)."""
    if reserved is not None:
        redemption_post(reserved, by_no_show=by_no_show, locked=True)


def unbilled(visit) -> None:
    """Un-arrive or undo a no-show: the use is reserved again."""
    live = visit_redemption(visit)
    if live is not None:
        redemption_unpost(live)


def voided(visits) -> None:
    """Cancelled (or a no-show charged the fee instead): free the reserved uses."""
    for visit in visits:
        live = visit_redemption(visit)
        if live is not None and live.status == Redemption.Status.RESERVED:
            redemption_void(live)


def check_move(appointment, *, new_date: dt.date, new_start: dt.datetime | None = None) -> None:
    """Rescheduling keeps the pass only if it still covers the new date (and time: the template's
    hours and use cap, issue 23); otherwise refuse, saying why."""
    for visit in appointment.visits.all():
        live = visit_redemption(visit)
        if live is None:
            continue
        sold = live.sold_pass
        if sold.kind == Pass.Kind.MEMBERSHIP:
            move_cycle(live, new_date)
            continue
        if sold.expires_on is not None and new_date > sold.expires_on:
            raise Conflict(
                f"{sold.name} expires on {sold.expires_on:%Y-%m-%d}, before the new date "
                f"{new_date:%Y-%m-%d}. Remove the package from this appointment first, "
                "or choose a date on or before its expiry.",
                code="expired",
            )
        rule = window_refusal(
            sold,
            location=appointment.location,
            start=new_start,
            visit_date=new_date,
            visit_pk=visit.pk,
        )
        if rule is not None:
            raise Conflict(
                f"{sold.name}: {REASONS[rule[0]].format(**rule[1])} Remove the package from this "
                "appointment first, or choose another time.",
                code=rule[0],
            )
        Redemption.objects.filter(pk=live.pk).update(visit_date=new_date)


def carry_over(*, actor, source, copy) -> None:
    """Copying an appointment carries each pass only if it can still cover the copy's date."""
    if not may_use_passes(actor, online=False):
        return
    copies = {r.patient_id: r for r in copy.visits.all()}
    for visit in source.visits.all():
        last = (
            Redemption.objects.filter(visit=visit).order_by("-pk").first()
        )  # a cancelled source voided it
        target = copies.get(visit.patient_id)
        if last is None or target is None:
            continue
        sold = Pass.objects.get(pk=last.sold_pass_id)
        if visit_redemption(target) is None and check_pass(sold, target).ok:
            pass_attach(actor=actor, visit=target, sold_pass=sold)
