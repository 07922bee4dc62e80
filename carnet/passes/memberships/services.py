"""Memberships (SPEC 6, 9.7): selling, the recurring billing of cycles, changing the card or
mode, pause and resume, cancel, delete and refunding a cycle. Using one is passes' common
eligibility and redemption code, with uses counted per cycle."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import F, Q

from carnet.billing.invoicing import LineInput, invoice_delete, invoice_take_back
from carnet.billing.locks import lock_invoices
from carnet.clinic.selectors import clinic_today, money_text
from carnet.core import activity, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.limits import date_check
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post
from carnet.passes.cycles import billed_cycles, cycle_for, cycle_start, row_make
from carnet.passes.invoicing import pass_invoice_issue, template_line
from carnet.passes.locks import lock_pass
from carnet.passes.models import (
    FreezeFee,
    Pass,
    PassInvoice,
    PassItem,
    PassPause,
    PassTemplate,
    Redemption,
)
from carnet.passes.redeeming.redemption import cycle_use_take, redemption_void
from carnet.passes.setup.intro_offers import intro_check, intro_override_record
from carnet.passes.terms import items_copy, pass_terms

from .card_requests import card_requests_close
from .writeoff import CycleFeeBack

Mode = Pass.PaymentMode
Status = Pass.Status
# The cycle rows that are invoiced: every one not paused, and a paused one with a freeze fee.
BILLED = Q(skipped=False) | Q(unit_price_minor__gt=0)


def _check_card(patient, mode: str, card) -> None:
    if mode not in Mode.values:
        raise ValidationFailed(
            "Choose manual or automatic payment.", fields={"payment_mode": ["Unknown mode."]}
        )
    if mode == Mode.AUTOMATIC:
        if card is None:
            raise ValidationFailed(
                "Automatic payment charges a card on file: choose one of the patient's cards "
                "(account credit cannot pay automatic cycles).",
                fields={"card_id": ["Choose a card."]},
            )
        if card.patient_id != patient.pk or card.removed_at:
            raise ValidationFailed(
                "Choose one of this patient's cards on file.", fields={"card_id": ["Not theirs."]}
            )


def rollover(sold: Pass, previous: PassInvoice | None, allowed: int | None) -> int:
    """Rollover (SPEC 9.7): how many of the previous cycle's unused uses (up to the cap) move into
    the cycle being invoiced — moved, not copied, so a use is never available in both cycles."""
    if not sold.rollover or allowed is None or previous is None or previous.uses_allowed is None:
        return 0
    unused = max(previous.uses_allowed - previous.used_count, 0)
    return unused if sold.rollover_cap is None else min(unused, sold.rollover_cap)


def _roll_into(sold: Pass, row: PassInvoice) -> None:
    previous = sold.pass_invoices.filter(seq__lt=row.seq, skipped=False).order_by("-seq").first()
    rolled = rollover(sold, previous, row.uses_allowed)
    if rolled:
        PassInvoice.objects.filter(pk=previous.pk).update(uses_allowed=F("uses_allowed") - rolled)
        PassInvoice.objects.filter(pk=row.pk).update(uses_allowed=F("uses_allowed") + rolled)
        row.refresh_from_db()


def membership_cycles_issue(
    sold: Pass, *, today: dt.date, actor=None, action=None, location=None
) -> list[PassInvoice]:
    """Make and invoice every cycle of `sold` that has started by `today` (pass locked by the
    caller). Automatic mode schedules a charge of the current cycle only:
    past cycles are paid by hand (SPEC 6.2)."""
    issued = []
    while True:
        row = (
            sold.pass_invoices.filter(BILLED, invoice__isnull=True, due_on__lte=today)
            .order_by("seq")
            .first()
        )
        if row is None:
            row = row_make(sold, starting_by=today)
            if row is None:
                break
            if row.skipped and not row.unit_price_minor:
                continue
        if not row.skipped:  # a frozen cycle billed its freeze fee takes no uses
            _roll_into(sold, row)
        pass_invoice_issue(actor=actor, row=row, action=action, location=location or sold.location)
        current = row.period_start <= today < row.period_end
        if sold.payment_mode == Mode.AUTOMATIC and sold.card_id and current:
            PassInvoice.objects.filter(pk=row.pk).update(next_attempt_on=today)
        issued.append(row)
    return issued


def membership_copy(
    template: PassTemplate,
    *,
    patient_id: int,
    actor,
    start_date: dt.date,
    purchase_date: dt.date,
    purchased_at: dt.datetime,
    payment_mode: str,
    card=None,
    location=None,
    sold_by=None,
    online: bool = False,
    clinic=None,
    **terms,
) -> Pass:
    """A membership with its own copy of the template's terms (SPEC 6.4, passes.terms) and the
    clinic's expiry terms at sale, not saved; `terms` override them (an import's remaining term
    and cycle price)."""
    sold = Pass(
        **pass_terms(template, clinic=clinic),
        patient_id=patient_id,
        price_minor=template.price_minor,
        net_minor=0,
        purchase_date=purchase_date,
        purchased_at=purchased_at,
        sold_by=sold_by,
        sold_online=online,
        card=card,
        start_date=start_date,
        payment_mode=payment_mode,
        location=location,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    for name, value in terms.items():
        setattr(sold, name, value)
    return sold


@transaction.atomic
def membership_sell(
    *,
    actor,
    patient,
    template: PassTemplate,
    start_date: dt.date | None = None,
    payment_mode: str = Mode.MANUAL,
    card=None,
    location=None,
    sold_by=None,
    action: Action | None = Action.SELL,
    online: bool = False,
    intro_override: bool = False,
) -> Pass:
    """Sell a membership starting today, later or in the past (past cycles are invoiced at once).
    An intro offer the patient may not have is refused unless `intro_override` (logged)."""
    if action is not None:
        require(actor, action)
    if template.kind != PassTemplate.Kind.MEMBERSHIP:
        raise ValidationFailed(
            f"{template} is not a membership.", fields={"template_id": ["Not a membership."]}
        )
    if template.archived:
        raise Conflict(f"{template} is archived; it is no longer sold.", code="template_archived")
    if online and not template.sold_online:
        raise Conflict(f"{template} is not offered online.", code="not_sold_online")
    if not template.items.exists():
        raise ValidationFailed(
            f"{template} has no eligible items; add some in Settings before selling it.",
            fields={"template_id": ["No eligible items."]},
        )
    _check_card(patient, payment_mode, card)
    now, today = clock.now(), clinic_today()
    membership_start_check(start_date, today=today)
    overridden = intro_check(
        actor=actor, template=template, patient=patient, override=intro_override
    )
    sold = membership_copy(
        template,
        patient_id=patient.pk,
        actor=actor,
        start_date=start_date or today,
        purchase_date=today,
        purchased_at=now,
        payment_mode=payment_mode,
        card=card if payment_mode == Mode.AUTOMATIC else None,
        location=location,
        sold_by=sold_by,
        online=online,
    )
    sold.save(force_insert=True)
    sold.taxes.set(template.taxes.all())
    PassItem.objects.bulk_create(items_copy(sold, template.items.all()))
    membership_cycles_issue(sold, today=today, actor=actor, action=action, location=location)
    activity.record(
        actor=actor,
        verb="sold" if not online else "bought_online",
        obj=sold,
        after=activity.snapshot(sold),
    )
    intro_override_record(actor=actor, sold=sold, sentence=overridden)
    return sold


# Past cycles are invoiced at once: a start in 1900 (or a typo like 0026) would issue thousands of
# invoices in one request. A membership older than this comes in through the
# import (opening balances).
MAX_PAST_START_DAYS = 366


def membership_invoice_lines(
    template: PassTemplate, *, start_date: dt.date | None = None
) -> list[list[LineInput]]:
    """The invoice lines selling the membership `template` now would issue (for a checkout's live
    totals): its cycles begun by today from `start_date` (blank: today), each at the template's
    cycle price, within its term."""
    today = clinic_today()
    membership_start_check(
        start_date, today=today
    )  # the sale's own limit: never a total for what it refuses
    shape = Pass(cycle=template.cycle, start_date=start_date or today)
    count = 0
    while cycle_start(shape, count) <= today and count < min(template.term_cycles or 10_000, 400):
        count += 1
    return [template_line(template, template.price_minor) for _ in range(count)]


def membership_start_check(start_date: dt.date | None, *, today: dt.date) -> None:
    date_check(start_date, field="start_date")
    if start_date is not None and start_date < today - dt.timedelta(days=MAX_PAST_START_DAYS):
        raise ValidationFailed(
            "Please correct start date: a membership sold here can start at most a year ago "
            f"(from {today - dt.timedelta(days=MAX_PAST_START_DAYS)}), since every past cycle is "
            "invoiced at once; bring an older one in with Imports.",
            fields={
                "start_date": [
                    "At most a year ago: every past cycle is invoiced at once (bring an older "
                    "membership in with Imports)."
                ]
            },
        )


@transaction.atomic
def membership_payment_set(*, actor, sold_pass: Pass, payment_mode: str, card=None) -> Pass:
    """Change the card or the payment mode from the next charge on."""
    require(actor, Action.SELL)
    sold = lock_pass(sold_pass.pk)
    membership_check_active(sold, "changed")
    _check_card(sold.patient, payment_mode, card)
    before = activity.snapshot(sold)
    sold.payment_mode, sold.card = payment_mode, card if payment_mode == Mode.AUTOMATIC else None
    sold.save(update_fields=["payment_mode", "card"])
    if (
        payment_mode == Mode.AUTOMATIC
    ):  # a card update request still open is done: staff chose the card
        card_requests_close(sold=sold, card=card, actor=actor)
    if payment_mode == Mode.AUTOMATIC:  # an unpaid current cycle is charged to the new card
        today = clinic_today()
        sold.pass_invoices.filter(
            invoice__isnull=False,
            period_start__lte=today,
            period_end__gt=today,
            invoice__applied_minor__lt=F("invoice__total_minor"),
        ).update(next_attempt_on=today, charge_attempts=0, needs_new_card=False)
    activity.record(
        actor=actor, verb="payment changed", obj=sold, before=before, after=activity.snapshot(sold)
    )
    return sold


def membership_check_active(sold: Pass, doing: str) -> None:
    if sold.kind != Pass.Kind.MEMBERSHIP:
        raise ValidationFailed(
            f"{sold.name} is not a membership.", fields={"pass_id": ["Not a membership."]}
        )
    if sold.status != Status.ACTIVE:
        raise Conflict(
            f"{sold.name} is {sold.get_status_display().lower()}; it cannot be {doing}.",
            code=f"pass_{sold.status}",
        )


def cycles_paid(sold: Pass) -> int:
    return sold.pass_invoices.filter(invoice__isnull=False, invoice__applied_minor__gt=0).count()


def cancel_warning(sold: Pass) -> str:
    """SPEC 6.1: "cancellable after N cycles" is a warning, not a block."""
    billed = billed_cycles(sold)
    if billed < sold.cancellable_after_cycles:
        return (
            f"The membership's policy is cancellable after {sold.cancellable_after_cycles} cycles; "
            f"{billed} have been billed so far."
        )
    return ""


def _void_after(sold: Pass, last_day: dt.date) -> None:
    for redemption in sold.redemptions.filter(
        status=Redemption.Status.RESERVED, visit_date__gt=last_day
    ):
        redemption_void(redemption)


@transaction.atomic
def membership_cancel(
    *, actor, sold_pass: Pass, at_cycle_end: bool = True, by_patient: bool = False
) -> Pass:
    """Cancel once a cycle has a payment applied (SPEC 6.4): no more cycles or charges. At once, the
    benefits end today (the current cycle's fee is earned now); at the cycle's end, they last until
    then. The uses of bookings after the last covered day are voided. It stays in history as
    cancelled."""
    if not by_patient:
        require(actor, Action.SELL)
    sold = lock_pass(sold_pass.pk)
    membership_check_active(sold, "cancelled")
    if not cycles_paid(sold):
        raise Conflict(
            f"{sold.name} has no paid cycle yet. Delete it instead if nothing was paid.",
            code="no_paid_cycle",
        )
    if by_patient:
        if not sold.self_cancel:
            raise Conflict(
                "This membership cannot be cancelled online; please contact the clinic.",
                code="self_cancel_off",
            )
        if billed_cycles(sold) < sold.cancellable_after_cycles:
            raise Conflict(
                f"This membership can be cancelled after {sold.cancellable_after_cycles} cycles; "
                "please contact the clinic.",
                code="inside_policy",
            )
    today = clinic_today()
    current = sold.pass_invoices.filter(period_start__lte=today, period_end__gt=today).first()
    last_day = (current.period_end - dt.timedelta(days=1)) if (at_cycle_end and current) else today
    used = (
        sold.redemptions.filter(status=Redemption.Status.POSTED, visit_date__gt=last_day)
        .order_by("visit_date")
        .first()
    )
    if used is not None:
        raise Conflict(
            f"A visit on {used.visit_date:%Y-%m-%d}, after the last covered day "
            f"{last_day:%Y-%m-%d}, already used {sold.name}. Un-arrive that visit (or undo its "
            "no-show) first.",
            code="visit_used",
        )
    before = activity.snapshot(sold)
    _void_after(sold, last_day)
    # Cycles not yet invoiced after the last day will never be: drop their rows.
    sold.pass_invoices.filter(invoice__isnull=True, period_start__gt=last_day).delete()
    PassInvoice.objects.filter(sold_pass=sold).update(next_attempt_on=None)
    sold.ends_after = last_day
    if not at_cycle_end or current is None:
        sold.status, sold.ended_at = Status.CANCELLED, clock.now()
        if (
            current is not None and current.invoice_id
        ):  # benefits end now: the cycle's fee is earned
            _recognise_rest(sold, current, memo=f"{sold.name} cancelled")
    sold.save(update_fields=["ends_after", "status", "ended_at"])
    activity.record(
        actor=actor,
        verb="cancelled" if not by_patient else "cancelled by patient",
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "warning": cancel_warning(sold)},
    )
    return sold


def _recognise_rest(sold: Pass, row: PassInvoice, *, memo: str) -> None:
    row.refresh_from_db()
    rest = row.net_minor - row.recognised_minor
    if rest > 0:
        PassInvoice.objects.filter(pk=row.pk).update(recognised_minor=row.net_minor)
        Pass.objects.filter(pk=sold.pk).update(recognised_minor=F("recognised_minor") + rest)
        transaction_post(
            kind="membership_recognised",
            source=sold,
            memo=memo,
            lines=[
                Line(accounts.DEFERRED_MEMBERSHIPS, debit=rest),
                Line(accounts.revenue(sold.income_category_id), credit=rest),
            ],
        )


def memberships_end(*, today: dt.date | None = None) -> int:
    """The job: memberships cancelled at a cycle's end, or past their term,
    end after their last day."""
    today = today or clinic_today()
    ended = 0
    for sold in Pass.objects.filter(
        kind=Pass.Kind.MEMBERSHIP, status=Status.ACTIVE, ends_after__lt=today
    ):
        Pass.objects.filter(pk=sold.pk, status=Status.ACTIVE).update(
            status=Status.CANCELLED, ended_at=clock.now()
        )
        ended += 1
    return ended


@transaction.atomic
def membership_delete(*, actor, sold_pass: Pass) -> Pass:
    """Only while every issued cycle invoice is unpaid (SPEC 6.4): the invoices are deleted and it
    disappears from billing. Refused once a visit has used it (un-arrive that visit first)."""
    require(actor, Action.INVOICE_DELETE)
    sold = lock_pass(sold_pass.pk)
    if sold.kind != Pass.Kind.MEMBERSHIP or sold.status == Status.DELETED:
        raise Conflict(f"{sold.name} cannot be deleted here.", code="not_deletable")
    rows = list(sold.pass_invoices.select_related("invoice").filter(invoice__isnull=False))
    if any(r.invoice.applied_minor for r in rows if not r.invoice.deleted_at):
        raise Conflict(
            f"{sold.name} has a paid cycle: cancel it (and refund a cycle) instead of deleting it.",
            code="invoice_has_payments",
        )
    if sold.posted_count:
        raise Conflict(
            f"{sold.name} has covered visits; un-arrive them first, or cancel it instead.",
            code="pass_used",
        )
    if any(r.invoice.lines.filter(kind="pass_credit").exists() for r in rows):
        raise Conflict(
            f"A cycle of {sold.name} was refunded; cancel it instead of deleting it.",
            code="cycle_refunded",
        )
    before = activity.snapshot(sold)
    _void_after(sold, dt.date.min)
    if (
        sold.recognised_minor
    ):  # fees earned so far go back to deferred before the invoices are reversed
        transaction_post(
            kind="membership_recognition_reversed",
            source=sold,
            memo=f"{sold.name} deleted",
            lines=[
                Line(accounts.revenue(sold.income_category_id), debit=sold.recognised_minor),
                Line(accounts.DEFERRED_MEMBERSHIPS, credit=sold.recognised_minor),
            ],
        )
    for row in rows:
        if not row.invoice.deleted_at:
            invoice_delete(actor=actor, invoice=row.invoice, pass_sale=True)
    PassInvoice.objects.filter(sold_pass=sold).update(recognised_minor=0, next_attempt_on=None)
    sold.status, sold.ended_at, sold.recognised_minor = (
        Status.DELETED,
        clock.now(),
        sold.deferred_minor,
    )
    sold.save(update_fields=["status", "ended_at", "recognised_minor"])
    activity.record(
        actor=actor, verb="deleted", obj=sold, before=before, after=activity.snapshot(sold)
    )
    return sold


def cycle_refund_suggestion(row: PassInvoice, *, today: dt.date | None = None) -> dict:
    """SPEC 6.4: (cycle price ÷ uses) × unused uses; unlimited: prorated by unused days. Never more
    than what was collected on the cycle's invoice."""
    today = today or clinic_today()
    collected = row.invoice.applied_minor if row.invoice_id else 0
    if row.uses_allowed is None:
        days = (row.period_end - row.period_start).days
        unused_days = min(max((row.period_end - max(today, row.period_start)).days, 0), days)
        suggested = row.amount_minor * unused_days // days
    else:
        unused = max(row.uses_allowed - row.used_count, 0)
        suggested = row.amount_minor * unused // row.uses_allowed if row.uses_allowed else 0
    return {"collected": collected, "suggested": min(suggested, collected)}


@transaction.atomic
def cycle_refund(*, actor, row: PassInvoice, amount_minor: int, reason: str = "") -> PassInvoice:
    """Refund a cycle: `amount_minor` (0..collected) becomes credit; the cycle's unused uses end and
    its unearned fee leaves deferred revenue (refunded, the rest earned now).
    Then refund the payment."""
    require(actor, Action.REFUND)
    row = PassInvoice.objects.select_related("invoice", "sold_pass").get(pk=row.pk)
    if row.invoice_id:
        row.invoice = lock_invoices([row.invoice_id])[
            row.invoice_id
        ]  # the fixed order: invoice, then pass
    sold = lock_pass(row.sold_pass_id)
    if row.invoice is None or row.invoice.deleted_at:
        raise Conflict(
            "This cycle was never invoiced; there is nothing to refund.", code="not_invoiced"
        )
    collected = row.invoice.applied_minor
    if not 0 <= amount_minor <= collected:
        raise ValidationFailed(
            f"Refund between {money_text(0)} and {money_text(collected)}, what was collected "
            "for this cycle.",
            fields={"amount_minor": ["Out of range."]},
        )
    PassInvoice.objects.filter(pk=row.pk).update(
        uses_allowed=row.used_count
    )  # no more uses this cycle
    before = activity.snapshot(row)
    fee = CycleFeeBack(sold, row)
    if (
        amount_minor or row.invoice.balance_minor
    ):  # an unpaid balance of a refunded cycle is cancelled too
        invoice_take_back(
            invoice=row.invoice,
            amount_minor=row.invoice.balance_minor + amount_minor,
            to_credit_minor=amount_minor,
            source=row,
            description=f"Refund of {sold.name}, {row.period_start:%Y-%m-%d} cycle",
            memo=f"{sold.name}: cycle {row.seq} refunded",
            counter_lines=fee.counter,
        )
    fee.earn_rest(
        source=row, memo=f"{sold.name}: cycle {row.seq} refunded"
    )  # the rest is earned now
    unearned = row.net_minor - row.recognised_minor  # all of it has now left deferred revenue
    PassInvoice.objects.filter(pk=row.pk).update(recognised_minor=row.net_minor)
    Pass.objects.filter(pk=sold.pk).update(recognised_minor=F("recognised_minor") + unearned)
    row.refresh_from_db()
    activity.record(
        actor=actor,
        verb="cycle refunded",
        obj=sold,
        before=before,
        after={**activity.snapshot(row), "amount_minor": amount_minor, "reason": reason[:200]},
    )
    return row


def membership_cycles_retime(sold: Pass, from_seq: int, change) -> None:
    """Re-make the not-yet-invoiced cycles from `from_seq` after `change()` moves the timeline
    (a pause or a resume): uses booked in them move to the cycle now covering their day, or are
    voided when that cycle is paused or full. Refused while a visit already used one of them."""
    rows = list(sold.pass_invoices.filter(seq__gte=from_seq, invoice__isnull=True))
    used = (
        Redemption.objects.filter(cycle__in=rows, status=Redemption.Status.POSTED)
        .order_by("visit_date")
        .first()
    )
    if used is not None:
        raise Conflict(
            f"A visit on {used.visit_date:%Y-%m-%d} already used {sold.name} in a cycle this "
            "would move. Un-arrive that visit (or undo its no-show) first.",
            code="visit_used",
        )
    moving = list(
        Redemption.objects.filter(cycle__in=rows, status=Redemption.Status.RESERVED).order_by(
            "visit_date", "pk"
        )
    )
    for row in sorted(rows, key=lambda r: -r.seq):
        row.delete()  # the uses' cycle becomes empty until they are placed again below
    change()
    uses_place(sold, moving)


def uses_place(sold: Pass, moving: list[Redemption]) -> None:
    """Put reserved uses (taken out of their cycle) in the cycle now covering their day, or void
    them when that cycle is paused or full."""

    for redemption in moving:
        redemption.refresh_from_db()
        row = cycle_for(sold, redemption.visit_date, create=True)
        if row is not None and not row.skipped and cycle_use_take(row):
            Redemption.objects.filter(pk=redemption.pk).update(cycle=row)
        else:
            redemption_void(redemption)


@transaction.atomic
def membership_pause(
    *, actor, sold_pass: Pass, cycles: int, by_patient: bool = False, fee_shown: int | None = None
) -> PassPause:
    """Pause from the next cycle not yet invoiced for `cycles` cycles: they are not billed and the
    end moves out (SPEC 9.7). The uses of bookings in the paused cycles are voided; later ones move
    with their cycles. A freeze fee (issue 22 point 7) is billed like a cycle on the frozen cycles
    (per cycle, or the first only); `fee_shown`, the total fee the patient saw, must still be
    right."""
    if not by_patient:
        require(actor, Action.SELL)
    sold = lock_pass(sold_pass.pk)
    membership_check_active(sold, "paused")
    if not sold.pause_allowed:
        raise Conflict(
            f"{sold.name} cannot be paused (its template does not allow it).",
            code="pause_not_allowed",
        )
    most = max(sold.pause_max_cycles, 1)
    if not 1 <= cycles <= most:
        raise ValidationFailed(pause_limit_words(sold), fields={"cycles": [f"1 to {most}."]})
    if fee_shown is not None and fee_shown != freeze_fee_total(sold, cycles):
        raise Conflict(
            f"The freeze fee of {sold.name} is now {money_text(freeze_fee_total(sold, cycles))}; "
            "review it and pause again.",
            code="freeze_fee_changed",
        )
    if sold.pauses.filter(resumed_at__isnull=True).exists():
        raise Conflict(f"{sold.name} is already paused; resume it first.", code="already_paused")
    last_invoiced = (
        sold.pass_invoices.filter(invoice__isnull=False)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    from_seq = (last_invoiced or 0) + 1
    made = {}

    def pause_now():
        made["pause"] = PassPause.objects.create(
            sold_pass=sold,
            from_seq=from_seq,
            cycles=cycles,
            created_at=clock.now(),
            fee_kind=sold.freeze_fee_kind,
            fee_minor=sold.freeze_fee_minor,
        )

    membership_cycles_retime(sold, from_seq, pause_now)
    activity.record(
        actor=actor,
        verb="paused",
        obj=sold,
        after={
            "from_cycle": from_seq,
            "cycles": cycles,
            "freeze_fee_minor": freeze_fee_total(sold, cycles),
        },
    )
    return made["pause"]


def pause_limit_words(sold: Pass) -> str:
    """The longest freeze of the membership's plan, enforced for staff and patients alike."""
    most = max(sold.pause_max_cycles, 1)
    return (
        f"{sold.name} can be paused for at most {most} cycle{'s' if most != 1 else ''} at a time: "
        f"choose 1 to {most}."
    )


def freeze_fee_total(sold: Pass, cycles: int) -> int:
    """What a pause of `cycles` cycles bills in freeze fees (line prices, before any tax on top)."""
    if sold.freeze_fee_kind == FreezeFee.PER_CYCLE:
        return sold.freeze_fee_minor * cycles
    return sold.freeze_fee_minor if sold.freeze_fee_kind == FreezeFee.ONCE else 0


def freeze_fee_words(sold: Pass) -> str:
    """The freeze fee as the pause forms show it, before the patient or staff
    confirm; "" without one."""
    fee = money_text(sold.freeze_fee_minor)
    tax = " plus tax" if sold.taxes.exists() and not sold.tax_inclusive else ""
    if sold.freeze_fee_kind == FreezeFee.PER_CYCLE and sold.freeze_fee_minor:
        return (
            f"A freeze fee of {fee}{tax} is billed for each paused cycle, when that cycle would "
            "have started."
        )
    if sold.freeze_fee_kind == FreezeFee.ONCE and sold.freeze_fee_minor:
        return f"A freeze fee of {fee}{tax} is billed once, when the pause starts."
    return ""


@transaction.atomic
def membership_resume(*, actor, sold_pass: Pass, by_patient: bool = False) -> Pass:
    """End the pause early: the paused cycles that have not started are billed again (bookings
    after the pause move back with their cycles)."""
    if not by_patient:
        require(actor, Action.SELL)
    sold = lock_pass(sold_pass.pk)
    pause = sold.pauses.filter(resumed_at__isnull=True).first()
    if pause is None:
        raise Conflict(f"{sold.name} is not paused.", code="not_paused")
    started = sold.pass_invoices.filter(
        seq__gte=pause.from_seq, skipped=True, period_start__lte=clinic_today()
    ).count()

    def resume_now():
        pause.cycles, pause.resumed_at = started, clock.now()
        pause.save(update_fields=["cycles", "resumed_at"])

    membership_cycles_retime(sold, pause.from_seq + started, resume_now)
    activity.record(actor=actor, verb="resumed", obj=sold, after={"skipped_cycles": started})
    return sold
