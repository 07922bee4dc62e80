"""Redeeming (SPEC 5.3), two-phase (CONVENTIONS 9): attaching a pass to a booked visit reserves a
use at once; arrival posts it (the session's value leaves deferred revenue); removal or
cancellation voids it. Each transition happens once, under the pass's lock.

The value recognised by a posted use is what is left of the pass's value divided by the uses
still to post, rounded down; the last use takes the rest. So 100.00 over 3 gives 33.33, 33.33,
33.34 and a changed quantity (update sold packages) never loses a cent either.

A value package (issue 23) holds an amount instead of a count: attaching it reserves the visit's
value (its eligible item's value, or the treatment's price), or what is left of the balance when
that is less (partial cover: the patient owes the rest); arrival posts that amount and recognises
the same share of what is still deferred (value_share: 900.00 paid for 1,000.00 recognises 900/1000
of each draw, rounded down, and the draw that empties the balance takes the rest, so recognition
sums exactly to the price); removal gives the amount back to the balance.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery

from carnet.billing.invoicing import (
    LineInput,
    invoice_create,
    invoice_delete,
    invoice_payments_unapply,
)
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, atomic, clock, statements
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.permissions import Action, can, require
from carnet.ledger import accounts
from carnet.ledger.models import JournalTransaction
from carnet.ledger.services import Line, transaction_post, transaction_reverse
from carnet.passes.cycles import cycle_for, cycle_preview
from carnet.passes.locks import lock_pass
from carnet.passes.models import Pass, PassInvoice, PassItem, Redemption, value_left_expression
from carnet.passes.redeeming.breakage import (
    breakage_lines,
    breakage_share,
    expected_breakage_settle,
)
from carnet.passes.selectors import LIVE, pass_unlocked, passes_usable_by, visit_redemption
from carnet.people.selectors import family_ids
from carnet.scheduling.access import schedule_require
from carnet.scheduling.models import Status as VisitStatus
from carnet.scheduling.models import Visit
from carnet.scheduling.selectors import appointment_get

from .eligibility import REASONS, Verdict, auto_candidates, pass_check, visit_value

Status = Redemption.Status


def visit_date(visit) -> dt.date:
    appointment = visit.appointment
    return appointment.start.astimezone(ZoneInfo(appointment.location.time_zone)).date()


def _is_group_secondary(visit) -> bool:
    return visit.role == visit.Role.SECONDARY


def check_pass(
    sold: Pass, visit, *, online: bool = False, on_date: dt.date | None = None
) -> Verdict:
    if _is_group_secondary(visit):
        return Verdict("group_secondary", REASONS["group_secondary"])
    appointment = visit.appointment
    return pass_check(
        sold,
        patient=visit.patient,
        treatment=appointment.treatment,
        visit_date=on_date or visit_date(visit),
        online=online,
        location=appointment.location,
        start=None if on_date else appointment.start,
        visit_pk=visit.pk,
    )


def explain(visit, *, online: bool = False) -> list[dict]:
    """Every pass of the patient and of their linked family, with whether it can cover this visit
    and why not (a family member's pass shows `other_patient` unless it is shared with them)."""

    live = visit_redemption(visit)
    result = []
    family = family_ids(visit.patient)
    owned = Pass.objects.filter(Q(patient=visit.patient) | Q(patient__in=family))
    for sold in (
        owned.exclude(status=Pass.Status.DELETED)
        .distinct()
        .select_related("patient")
        .prefetch_related("items", "shares", "pass_invoices__invoice")
        .order_by("purchased_at", "pk")
    ):
        verdict = (
            Verdict("attached", REASONS["attached"])
            if live and live.sold_pass_id == sold.pk
            else check_pass(sold, visit, online=online)
        )
        result.append(
            {
                "pass": sold,
                "code": verdict.code,
                "message": verdict.message,
                "can_cover": verdict.ok,
                "warning": verdict.warning,
            }
        )
    return result


def _authorise(actor, visit, *, online: bool) -> None:
    if online:
        return  # the patient booking online; the caller checked it is their own visit

    appointment = visit.appointment
    schedule_require(
        actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id
    )
    require(actor, Action.PASS_USE)


def _locked(pk: int) -> Pass:
    """The pass under its lock, with what the eligibility check reads: the one read of it (an id
    from a request is not read before; unknown, it is a 422 naming `pass_id`)."""
    try:
        return lock_pass(pk, with_rules=True)
    except Pass.DoesNotExist:
        raise ValidationFailed(f"No pass with id {pk}.", fields={"pass_id": ["Unknown."]}) from None


# Conditional updates: even without a row lock (SQLite) a use is taken only if one is left.
# Compiled once per process (core.statements): every attach takes one.
_USE_TAKE = statements.update(
    lambda pk, unlocked, quantity: (
        Pass.objects.filter(pk=pk, status=Pass.Status.ACTIVE)
        .alias(
            used=F("reserved_count") + F("posted_count"),
            gone=F("reserved_count")
            + F("posted_count")
            + F("forfeited_count")
            + F("used_before_import"),
        )
        .filter(used__lt=unlocked, gone__lt=quantity),
        {"reserved_count": F("reserved_count") + 1},
    ),
    pk=int,
    unlocked=int,
    quantity=int,
)
_ITEM_USE_TAKE = statements.update(
    lambda pk: (
        PassItem.objects.filter(pk=pk).filter(Q(limit__isnull=True) | Q(used_count__lt=F("limit"))),
        {"used_count": F("used_count") + 1},
    ),
    pk=int,
)


def _reserve(*, sold_pk: int, visit, online: bool) -> Redemption:
    sold = _locked(sold_pk)
    verdict = check_pass(sold, visit, online=online)
    if not verdict.ok:
        raise Conflict(f"{sold.name}: {verdict.message}", code=verdict.code)
    if sold.kind == Pass.Kind.MEMBERSHIP:
        return _reserve_in_cycle(sold, visit, verdict)
    if sold.face_value_minor is not None:
        return _reserve_value(sold, visit, verdict)
    # (Both conditional, so neither can break a constraint; a refusal undoes both.)
    taken, item_taken = statements.updates_together(
        (_USE_TAKE, dict(pk=sold.pk, unlocked=pass_unlocked(sold), quantity=sold.quantity)),
        (_ITEM_USE_TAKE, dict(pk=verdict.item.pk)),
    )
    if not (taken and item_taken):
        raise Conflict(
            f"{sold.name}: {REASONS['used_up'].format(quantity=sold.quantity)}", code="used_up"
        )
    return statements.create(
        Redemption,
        sold_pass=sold,
        item=verdict.item,
        visit=visit,
        patient=visit.patient,
        visit_date=visit_date(visit),
        reserved_at=clock.now(),
    )


def _reserve_value(sold: Pass, visit, verdict: Verdict) -> Redemption:
    """Hold the visit's value on the balance, or what is left of it (partial cover). The pass is
    locked (PostgreSQL) or the writer serialised (SQLite); the conditional UPDATE still never lets
    the holds exceed the balance, and the check constraint backs it."""
    full = visit_value(verdict.item, visit.appointment.treatment)
    drawn = min(full, sold.value_left)
    taken = (
        Pass.objects.filter(pk=sold.pk, status=Pass.Status.ACTIVE)
        .alias(left=value_left_expression())
        .filter(left__gte=drawn, left__gt=0)
        .update(
            reserved_count=F("reserved_count") + 1,
            value_reserved_minor=F("value_reserved_minor") + drawn,
        )
    )
    item_taken = (
        PassItem.objects.filter(pk=verdict.item.pk)
        .filter(Q(limit__isnull=True) | Q(used_count__lt=F("limit")))
        .update(used_count=F("used_count") + 1)
    )
    if not taken:
        message = REASONS["used_up_value"].format(
            face_value=clinic_get().money(sold.face_value_minor)
        )
        raise Conflict(f"{sold.name}: {message}", code="used_up_value")
    if not item_taken:
        message = REASONS["item_limit"].format(
            limit=verdict.item.limit, treatment=visit.appointment.treatment.name
        )
        raise Conflict(f"{sold.name}: {message}", code="item_limit")
    return statements.create(
        Redemption,
        sold_pass=sold,
        item=verdict.item,
        visit=visit,
        patient=visit.patient,
        visit_date=visit_date(visit),
        reserved_at=clock.now(),
        drawn_minor=drawn,
        full_value_minor=full,
    )


def value_to_post(sold: Pass) -> int:
    """A value package's amount whose revenue is still deferred:
    held by bookings or not drawn yet."""
    return (
        sold.face_value_minor
        - sold.value_posted_minor
        - sold.value_forfeited_minor
        - sold.value_before_import_minor
    )


def value_share(left: int, drawn: int, to_post: int) -> int:
    """The deferred value a draw of `drawn` (out of the `to_post` still to post) recognises: `left`
    in proportion, rounded down; the draw that takes all that is left takes all of `left`, so no
    cent is lost or created (900.00 for 1,000.00: 33.33 drawn recognises 29.99,
    the last draw the rest)."""
    return left if drawn >= to_post else left * drawn // to_post


def uses_to_post(sold: Pass) -> int:
    """Uses whose value is still deferred: reserved or not yet used,
    neither posted nor forfeited."""
    return (sold.quantity or 0) - sold.posted_count - sold.forfeited_count - sold.used_before_import


def still_deferred(sold: Pass) -> int:
    """The one definition of the value a pass still holds in deferred revenue: what its invoices put
    there (deferred_minor, which grows as payment-plan instalments are invoiced) less what was
    recognised. Never net_minor, which counts instalments not invoiced yet (issue 17)."""
    return sold.deferred_minor - sold.recognised_minor


def next_use_share(left: int, to_post: int) -> int:
    """The value the next use takes: `left` split over `to_post` rounded down, the last one takes
    the rest (so the remainder goes to the last sessions, SPEC 3.5)."""
    return left if to_post <= 1 else left // to_post


def cycle_use_take(row) -> bool:
    return bool(
        PassInvoice.objects.filter(pk=row.pk)
        .filter(Q(uses_allowed__isnull=True) | Q(used_count__lt=F("uses_allowed")))
        .update(used_count=F("used_count") + 1)
    )


def _reserve_in_cycle(sold: Pass, visit, verdict: Verdict) -> Redemption:
    """A membership use counts against the cycle the visit falls in
    (made now if it is still ahead)."""

    day = visit_date(visit)
    row = cycle_for(sold, day, create=True)
    item_taken = (
        PassItem.objects.filter(pk=verdict.item.pk)
        .filter(Q(limit__isnull=True) | Q(used_count__lt=F("limit")))
        .update(used_count=F("used_count") + 1)
    )
    if row is None or row.skipped or not cycle_use_take(row) or not item_taken:
        raise Conflict(
            f"{sold.name}: "
            f"{REASONS['cycle_used_up'].format(uses=sold.uses_per_cycle, visit_date=day)}",
            code="cycle_used_up",
        )
    Pass.objects.filter(pk=sold.pk).update(reserved_count=F("reserved_count") + 1)
    return statements.create(
        Redemption,
        sold_pass=sold,
        item=verdict.item,
        visit=visit,
        patient=visit.patient,
        cycle=row,
        visit_date=day,
        reserved_at=clock.now(),
    )


def _reserve_first(candidates: list[Pass], *, visit, online: bool) -> Redemption | None:
    """Auto-select read the passes before locking them: one may have been used up meanwhile by a
    racing booking. Then the next best is tried, and the booking goes ahead without a
    pass if none is left."""
    for candidate in candidates:
        try:
            with transaction.atomic():  # a savepoint: a refused candidate leaves nothing behind
                return _reserve(sold_pk=candidate.pk, visit=visit, online=online)
        except Conflict:
            continue
    return None


def redemption_void(redemption: Redemption) -> None:
    """Void a reserved use (removal, cancellation, a pass or plan that no longer covers the visit):
    its pass, item and cycle get the use back. Once only: a use already voided or posted is left."""
    lock_pass(redemption.sold_pass_id)
    if not Redemption.objects.filter(pk=redemption.pk, status=Status.RESERVED).update(
        status=Status.VOIDED, voided_at=clock.now()
    ):
        return  # already voided (or posted)
    drawn = (
        {"value_reserved_minor": F("value_reserved_minor") - redemption.drawn_minor}
        if redemption.drawn_minor
        else {}
    )
    Pass.objects.filter(pk=redemption.sold_pass_id).update(
        reserved_count=F("reserved_count") - 1, **drawn
    )
    PassItem.objects.filter(pk=redemption.item_id).update(used_count=F("used_count") - 1)
    if redemption.cycle_id:
        PassInvoice.objects.filter(pk=redemption.cycle_id).update(used_count=F("used_count") - 1)
    _forfeit_if_ended(redemption.sold_pass_id)


def _forfeit_value(sold: Pass) -> None:
    """The value package's balance freed after it ended: forfeited,
    its deferred share to breakage."""
    freed = sold.value_left
    if freed <= 0:
        return
    value = value_share(still_deferred(sold), freed, value_to_post(sold))
    Pass.objects.filter(pk=sold.pk).update(
        value_forfeited_minor=F("value_forfeited_minor") + freed,
        recognised_minor=F("recognised_minor") + value,
    )
    if value:
        transaction_post(
            kind="pass_expired",
            source=sold,
            memo=f"{sold.name}: a booking's hold freed after it ended",
            lines=[
                Line(accounts.DEFERRED_PACKAGES, debit=value),
                Line(accounts.BREAKAGE, credit=value),
            ],
        )


def _forfeit_if_ended(pk: int) -> None:
    """A use freed on a package that has ended (expired, refunded, transferred) cannot be used
    again: it is forfeited and its share of the value moves to breakage, so none stays deferred."""
    sold = Pass.objects.get(pk=pk)
    if sold.kind != Pass.Kind.PACKAGE or sold.status == Pass.Status.ACTIVE:
        return
    if sold.face_value_minor is not None:
        return _forfeit_value(sold)
    if not sold.remaining:
        return
    value = next_use_share(still_deferred(sold), uses_to_post(sold))
    Pass.objects.filter(pk=pk).update(
        forfeited_count=F("forfeited_count") + 1, recognised_minor=F("recognised_minor") + value
    )
    if value:
        transaction_post(
            kind="pass_expired",
            source=sold,
            memo=f"{sold.name}: a use freed after it ended",
            lines=[
                Line(accounts.DEFERRED_PACKAGES, debit=value),
                Line(accounts.BREAKAGE, credit=value),
            ],
        )


def move_cycle(redemption: Redemption, new_date: dt.date) -> None:
    """Rescheduling a visit a membership covers: its use moves to the new date's
    cycle, if one is left."""

    sold = lock_pass(redemption.sold_pass_id)
    state, _, _ = cycle_preview(sold, new_date)
    if sold.status != Pass.Status.ACTIVE or state != "ok":
        code = "cancelled" if sold.status != Pass.Status.ACTIVE else state
        message = REASONS[code].format(visit_date=new_date, start_date=sold.start_date)
        raise Conflict(
            f"{sold.name}: {message} Remove it from this appointment first, or choose another "
            "date.",
            code=code,
        )
    row = cycle_for(sold, new_date, create=True)
    if row.pk != redemption.cycle_id:
        if not cycle_use_take(row):
            message = REASONS["cycle_used_up"].format(uses=row.uses_allowed, visit_date=new_date)
            raise Conflict(
                f"{sold.name}: {message} Remove it from this appointment first, or choose another "
                "date.",
                code="cycle_used_up",
            )
        PassInvoice.objects.filter(pk=redemption.cycle_id).update(used_count=F("used_count") - 1)
    Redemption.objects.filter(pk=redemption.pk).update(cycle=row, visit_date=new_date)


def redemption_post(
    redemption: Redemption, *, by_no_show: bool = False, locked: bool = False
) -> Redemption:
    """Arrival (or a no-show that uses the session): recognise this session's value.
    `redemption` comes with its item and visit (the caller read them), and with its pass read under
    lock if `locked` (visits.reservation); under the pass's lock the reserved → posted move is a
    conditional UPDATE, so it happens once however often it is asked."""
    sold = redemption.sold_pass if locked else lock_pass(redemption.sold_pass_id)
    # A membership's fee is recognised day by day over its cycle (memberships/cycles.py), not per
    # visit.
    if sold.kind == Pass.Kind.MEMBERSHIP:
        value = 0
    elif sold.face_value_minor is None:
        value = next_use_share(still_deferred(sold), uses_to_post(sold))
    else:  # a value package: the amount the booking held, and the same share of what is deferred
        value = value_share(still_deferred(sold), redemption.drawn_minor, value_to_post(sold))
    # Proportional breakage (packages/breakage.py): nothing to compute, no statement more, at a rate
    # of 0; none once the package has ended (a use kept at expiry, posted after it): its breakage is
    # settled.
    share = (
        breakage_share(sold, value=value, left_after=still_deferred(sold) - value)
        if sold.breakage_rate_bp and sold.status == Pass.Status.ACTIVE
        else 0
    )
    item = redemption.item
    upfront = sold.sold_by_id is not None
    compensation = (
        0
        if upfront
        else (
            item.compensation_minor
            if item.compensation_minor is not None
            else item.treatment.price_minor
        )
    )
    now = clock.now()
    posted = dict(
        status=Status.POSTED,
        posted_at=now,
        value_minor=value,
        breakage_minor=share,
        additional_charge_minor=item.additional_charge_minor,
        practitioner_id=redemption.visit.appointment.practitioner_id,
        compensation_minor=compensation,
        compensated_upfront=upfront,
        by_no_show=by_no_show,
        remaining_after=sold.remaining,  # reserved → posted leaves remaining unchanged
        **({"value_left_after": sold.value_left} if sold.face_value_minor is not None else {}),
    )
    posting = _POSTED if sold.face_value_minor is None else _POSTED_VALUE
    # The pass's counters move only with the use (one statement on PostgreSQL).
    if not statements.updates_together(
        (posting, dict(pk=redemption.pk, **posted)),
        (_USE_POSTED, dict(pk=sold.pk, value=value, share=share, drawn=redemption.drawn_minor)),
        chained=True,
    )[0]:
        raise Conflict(
            "This use is not reserved any more; reload the appointment.", code="not_reserved"
        )
    for name, field_value in posted.items():
        setattr(redemption, name, field_value)
    if value:
        transaction_post(
            kind="pass_redeemed",
            source=redemption,
            at=now,
            memo=f"{sold.name}: one use",
            lines=[
                Line(accounts.DEFERRED_PACKAGES, debit=value),
                Line(accounts.revenue(sold.income_category_id), credit=value),
                *breakage_lines(share),
            ],
        )
    return redemption


def _drawn_moves(drawn: int, sign: int) -> dict:
    """A value package's held amount moving to drawn (+1, arrival) or back (-1, un-arrive); a
    package that counts uses holds 0, and a move of 0 changes nothing."""
    return {
        "value_reserved_minor": F("value_reserved_minor") - sign * drawn,
        "value_posted_minor": F("value_posted_minor") + sign * drawn,
    }


def _posted(*fields: str) -> statements.Update:
    """The reserved → posted move of a use, setting `fields` (conditional: once however often it is
    asked)."""
    return statements.Update(
        lambda pk, **posted: (
            Redemption.objects.filter(pk=pk, status=Status.RESERVED),
            posted,
        ),
        {"pk": int, **{name: Redemption._meta.get_field(name) for name in fields}},
        name="redemption posted" + (" (value package)" if "value_left_after" in fields else ""),
    )


# Compiled once per process (core.statements): every arrival posts a use. One statement per
# shape: a breakage or a drawn amount of 0 is a move of 0.
_POSTED_FIELDS = (
    "status",
    "posted_at",
    "value_minor",
    "breakage_minor",
    "additional_charge_minor",
    "practitioner_id",
    "compensation_minor",
    "compensated_upfront",
    "by_no_show",
    "remaining_after",
)
_POSTED = _posted(*_POSTED_FIELDS)
_POSTED_VALUE = _posted(*_POSTED_FIELDS, "value_left_after")
_USE_POSTED = statements.update(
    lambda pk, value, share, drawn: (
        Pass.objects.filter(pk=pk),
        {
            "reserved_count": F("reserved_count") - 1,
            "posted_count": F("posted_count") + 1,
            "recognised_minor": F("recognised_minor") + value,
            "breakage_expected_minor": F("breakage_expected_minor") + share,
            **_drawn_moves(drawn, +1),
        },
    ),
    pk=int,
    value=int,
    share=int,
    drawn=int,
)


def redemption_unpost(redemption: Redemption) -> None:
    """Un-arrive (or undo a no-show): the use goes back to reserved and its revenue is reversed."""
    lock_pass(redemption.sold_pass_id)
    redemption = Redemption.objects.get(pk=redemption.pk)
    if redemption.status != Status.POSTED:
        return
    for txn in JournalTransaction.objects.filter(
        kind="pass_redeemed",
        source_type="passes.redemption",
        source_id=redemption.pk,
        reversed_by__isnull=True,
    ):
        transaction_reverse(
            txn=txn,
            memo="Visit un-arrived: the use is reserved again",
            kind="pass_redemption_undone",
        )
    Pass.objects.filter(pk=redemption.sold_pass_id).update(
        reserved_count=F("reserved_count") + 1,
        posted_count=F("posted_count") - 1,
        recognised_minor=F("recognised_minor") - redemption.value_minor,
        breakage_expected_minor=F("breakage_expected_minor")
        - redemption.breakage_minor,  # reversed with it
        **_drawn_moves(redemption.drawn_minor, -1),
    )
    Redemption.objects.filter(pk=redemption.pk).update(
        status=Status.RESERVED,
        posted_at=None,
        value_minor=0,
        breakage_minor=0,
        compensation_minor=0,
        compensated_upfront=False,
        practitioner=None,
        additional_charge_minor=0,
        remaining_after=None,
        value_left_after=None,
        by_no_show=False,
    )
    if (
        redemption.breakage_minor
    ):  # on a package already ended, its share was settled: settle the reversal too
        ended = (
            Pass.objects.filter(pk=redemption.sold_pass_id)
            .exclude(status=Pass.Status.ACTIVE)
            .first()
        )
        if ended is not None:
            expected_breakage_settle(ended, memo=f"{ended.name}: a visit un-arrived after it ended")


# Compiled once per process (core.statements): every attach locks its visit, found by its key or
# (the API) by its appointment and patient, one visit each (a unique constraint), with the name of
# the pass already covering it, if one does (`covered_by`): one statement, not a read after it.
def _locked_visits():
    covered_by = Subquery(
        Redemption.objects.filter(visit_id=OuterRef("pk"), status__in=LIVE).values(
            "sold_pass__name"
        )[:1]
    )
    return (
        Visit.objects.select_for_update(of=("self",))
        .select_related("appointment__treatment", "appointment__location", "patient")
        .annotate(covered_by=covered_by)
    )


_LOCKED_VISIT = statements.select(lambda pk: _locked_visits().filter(pk=pk), pk=int)
_LOCKED_PATIENT_VISIT = statements.select(
    lambda appointment, patient: _locked_visits().filter(
        appointment_id=appointment, patient_id=patient
    ),
    appointment=int,
    patient=int,
)
# The unique index that keeps one live use per visit (Redemption.Meta), as each database names it
# in its error.
_ONE_LIVE = ("one_live_redemption_per_visit", "passes_redemption.visit_id")


def _covered_meanwhile(exc: IntegrityError) -> bool:
    return any(name in str(exc) for name in _ONE_LIVE)


def visit_missing(actor, appointment_id: int, patient_id: int):
    """Refuse a request that names a patient's visit which is not there, saying what is wrong: an
    unknown or out-of-scope appointment first, then the right to use passes, then the patient.
    (Asked before the refusal: inside a keyed API request nothing can be read after it.)"""
    appointment_get(actor=actor, pk=appointment_id, bare=True)
    require(actor, Action.PASS_USE)
    raise NotFound(f"Patient {patient_id} is not in appointment {appointment_id}.")


@atomic.service
def pass_attach(
    *,
    actor,
    visit: Visit | None = None,
    appointment_id: int | None = None,
    patient_id: int | None = None,
    sold_pass: Pass | None = None,
    sold_pass_id: int | None = None,
    online: bool = False,
) -> Redemption | None:
    """Cover a visit with a pass: `sold_pass` (or the one `sold_pass_id` names, read only under its
    lock), or the auto-selected one (None when nothing fits). A booked visit reserves a use; an
    arrived visit is redeemed after the fact (SPEC 5.3). The visit is given, or named by its
    appointment and patient (read once, under its lock: NotFound when there is none)."""

    # The visit's row lock makes two attaches to one visit queue, so the second sees the first
    # (PostgreSQL); on SQLite BEGIN IMMEDIATE already serialises them.
    if visit is None:
        visit = _LOCKED_PATIENT_VISIT.get_or_none(appointment=appointment_id, patient=patient_id)
        if visit is None:
            visit_missing(actor, appointment_id, patient_id)
        _authorise(actor, visit, online=online)
    else:
        _authorise(actor, visit, online=online)
        visit = _LOCKED_VISIT.get(pk=visit.pk)
    if visit.covered_by is not None:
        raise Conflict(
            f"This visit is already covered by {visit.covered_by}. Remove it first to use another.",
            code="already_covered",
        )
    if visit.status not in (VisitStatus.BOOKED, VisitStatus.ARRIVED):
        raise Conflict(
            f"This visit is {visit.get_status_display().lower()}; only a booked or arrived visit "
            "can use a package.",
            code="not_booked",
        )
    if sold_pass is not None:
        sold_pass_id = sold_pass.pk
    if sold_pass_id is None and _is_group_secondary(visit):
        return None
    try:
        redemption = _reserve_for(visit, sold_pass_id, online=online)
    except IntegrityError as exc:
        # PostgreSQL: this request waited for the visit's lock while another covered the visit;
        # the name read with the lock was from before (only the locked row is read again), and
        # the one-live-use index refused the second use. SQLite runs one writer at a time.
        if not _covered_meanwhile(exc):
            raise
        raise Conflict(
            "This visit was covered by another request a moment ago. Reload it to see which "
            "package, and remove that one first to use another.",
            code="already_covered",
        ) from None
    if redemption is None:
        return None
    if visit.status == VisitStatus.ARRIVED:
        _cover_past_visit(actor, visit, redemption)
    activity.record(
        actor=actor, verb="pass attached", obj=redemption, after=activity.snapshot(redemption)
    )
    treatment = visit.appointment.treatment
    if redemption.item.treatment_id == treatment.pk:
        redemption.item.treatment = treatment  # read with the visit: the answer names it
    return redemption


def _reserve_for(visit, sold_pass_id: int | None, *, online: bool) -> Redemption | None:
    """The use reserved for `visit` from the pass `sold_pass_id` names, or from the first
    auto-selected pass that still has one (None when none fits)."""
    if sold_pass_id is not None:
        return _reserve(sold_pk=sold_pass_id, visit=visit, online=online)
    return _reserve_first(
        auto_candidates(
            passes_usable_by(visit.patient),
            patient=visit.patient,
            treatment=visit.appointment.treatment,
            visit_date=visit_date(visit),
            online=online,
            location=visit.appointment.location,
            start=visit.appointment.start,
            visit_pk=visit.pk,
        ),
        visit=visit,
        online=online,
    )


def _cover_past_visit(actor, visit, redemption: Redemption) -> None:
    """The visit was billed at full price: its payments become credit, its invoice is replaced by
    one for the additional charge, and the use is posted."""

    old = visit.invoice
    if old is not None and old.deleted_at is None:
        invoice_payments_unapply(
            invoice=old, source=redemption, memo=f"{old} now covered by {redemption.sold_pass}"
        )
        invoice_delete(actor=actor, invoice=old, action=None)
        first = old.lines.order_by("pk").first()
        line = LineInput(
            treatment_id=first.treatment_id, staff_id=first.staff_id, description=first.description
        )
        visit.invoice = invoice_create(
            actor=actor,
            patient=old.patient,
            lines=[covered_line(redemption, line)],
            location=old.location,
            staff=old.staff,
            invoice_date=old.invoice_date,
            action=None,
        )
        visit.save(update_fields=["invoice"])
    redemption_post(redemption)


def covered_line(redemption: Redemption, line):
    """The visit's invoice line when a pass covers it: the patient owes the additional charge (and,
    when a value package's balance covers only part of the visit, the part not covered)."""
    item = redemption.item
    if redemption.full_value_minor:
        return _value_covered_line(redemption, line)
    line.unit_price_minor = item.additional_charge_minor
    line.description = f"{line.description} — covered by {redemption.sold_pass.name}"[:200]
    return line


def uncovered_minor(redemption: Redemption, price_minor: int) -> int:
    """The part of a visit's price a value package's draw leaves to the patient
    (0: fully covered)."""
    full, drawn = redemption.full_value_minor, redemption.drawn_minor
    return price_minor * (full - drawn) // full if full and drawn < full else 0


def _value_covered_line(redemption: Redemption, line):
    """A value package's line: the amount drawn is named, and a partial cover charges the rest."""
    money = clinic_get().money
    item = redemption.item
    due = uncovered_minor(redemption, item.treatment.price_minor)
    line.unit_price_minor = item.additional_charge_minor + due
    covered = f"{money(redemption.drawn_minor)} covered by {redemption.sold_pass.name}"
    if due:
        covered = (
            f"{money(redemption.drawn_minor)} of {money(redemption.full_value_minor)} covered by "
            f"{redemption.sold_pass.name} (its balance ran short); {money(due)} due"
        )
    line.description = f"{line.description} — {covered}"[:200]
    return line


@atomic.service
def pass_remove(*, actor, visit) -> Redemption:
    """Free the use reserved by a booked visit (an arrived visit must be un-arrived first)."""
    _authorise(actor, visit, online=False)
    live = visit_redemption(visit)
    if live is None:
        raise NotFound("No package covers this visit.")
    if live.status == Status.POSTED:
        raise Conflict(
            "This visit has arrived, so its use is taken. Un-arrive it first, then remove the "
            "package.",
            code="arrived",
        )
    before = activity.snapshot(live)
    redemption_void(live)
    live.refresh_from_db()
    activity.record(
        actor=actor, verb="pass removed", obj=live, before=before, after=activity.snapshot(live)
    )
    return live


def may_use_passes(actor, *, online: bool) -> bool:
    return online or can(actor, Action.PASS_USE)
