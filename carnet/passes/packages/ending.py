"""Changing and ending a sold package (SPEC 5.4, 9.5, 9.12): expiry edits, the expiry job,
refund, delete and transfer. Each posts what it does to the ledger and writes the activity log."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import F

from carnet.billing.invoicing import invoice_delete, invoice_take_back
from carnet.billing.locks import lock_invoices
from carnet.billing.models import Payment
from carnet.billing.tax import line_amounts
from carnet.clinic.selectors import clinic_today, money_text
from carnet.core import activity, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.selectors import postings_for_source
from carnet.ledger.services import Line, transaction_post
from carnet.passes.locks import lock_pass
from carnet.passes.models import Pass, PassInvoice, PassItem, PassShare, Redemption
from carnet.passes.redeeming.breakage import expected_breakage_settle
from carnet.passes.redeeming.redemption import (
    redemption_void,
    still_deferred,
    uses_to_post,
    value_to_post,
)
from carnet.passes.selectors import pass_collected_minor, pass_fully_paid, pass_invoices
from carnet.passes.setup.expiry_rules import expiry_allowed, expiry_terms, pass_expiry_terms
from carnet.passes.terms import items_copy, pass_terms
from carnet.people.selectors import family_ids

Status = Pass.Status


def _active(sold: Pass, doing: str) -> None:
    if sold.status != Status.ACTIVE:
        raise Conflict(
            f"{sold.name} is {sold.get_status_display().lower()}; it cannot be {doing}.",
            code=f"pass_{sold.status}",
        )


def _unrecognised(sold: Pass) -> int:
    return still_deferred(sold)


@transaction.atomic
def pass_expiry_set(*, actor, sold_pass: Pass, expires_on: dt.date | None) -> Pass:
    """Change or clear one sold pass's expiry (SPEC 5.4), within the clinic's expiry rule (9.10)."""

    require(actor, Action.PASS_EXPIRY_EDIT)
    sold = lock_pass(sold_pass.pk)
    if (
        sold.status not in (Status.ACTIVE, Status.EXPIRED)
        or sold.status == Status.EXPIRED
        and (sold.forfeited_count or sold.value_forfeited_minor)
    ):
        raise Conflict(
            f"{sold.name} is {sold.get_status_display().lower()}; its expiry can no longer change.",
            code=f"pass_{sold.status}",
        )
    if expires_on is not None:
        # Both the terms it was sold with and the clinic's now (issue 23): an edit never worsens
        # what the patient was sold, and never goes against the clinic's law today.
        for terms in (pass_expiry_terms(sold), expiry_terms()):
            expiry_allowed(purchase_date=sold.purchase_date, expires_on=expires_on, terms=terms)
        later = sold.redemptions.filter(
            status=Redemption.Status.RESERVED, visit_date__gt=expires_on
        ).first()
        if later is not None:
            raise Conflict(
                f"{sold.name} is attached to a visit on {later.visit_date:%Y-%m-%d}, after "
                f"{expires_on:%Y-%m-%d}. Remove it from that visit first, or choose a later date.",
                code="reserved_after_expiry",
            )
    before = activity.snapshot(sold)
    sold.expires_on = expires_on
    sold.save(update_fields=["expires_on"])
    activity.record(
        actor=actor, verb="expiry changed", obj=sold, before=before, after=activity.snapshot(sold)
    )
    return sold


def _forfeit(sold: Pass, *, kind: str, lines_for, memo: str) -> int:
    """End the pass's unused uses: all of them but those reserved for visits on or before expiry.
    Moves their value out of deferred revenue with `lines_for(value)`; returns the value. A value
    package (issue 23) ends its free balance the same way: the amounts held by bookings keep their
    share of the deferred value (rounded down), the rest moves out."""
    left = _unrecognised(sold)
    if sold.face_value_minor is not None:
        unused, to_post, counter = sold.value_left, value_to_post(sold), "value_forfeited_minor"
        keep = left * sold.value_reserved_minor // to_post if to_post else 0
    else:
        to_post, counter = uses_to_post(sold), "forfeited_count"
        unused = to_post - sold.reserved_count
        # The reserved uses keep the first (smallest) shares;
        # the remainder goes with the unused ones.
        keep = sold.reserved_count * (left // to_post) if to_post else 0
    value = left - keep if unused > 0 else 0
    Pass.objects.filter(pk=sold.pk).update(
        **{counter: F(counter) + max(unused, 0)}, recognised_minor=F("recognised_minor") + value
    )
    if value:
        transaction_post(kind=kind, source=sold, memo=memo, lines=lines_for(value))
    return value


def _cancel_instalments(sold: Pass) -> int:
    """A payment-plan package that ends (expires, is refunded) keeps what was invoiced, and its
    instalments not invoiced yet are cancelled: never invoiced or charged (marked skipped, like a
    paused membership cycle). Their value was never deferred, so nothing moves for them."""
    return PassInvoice.objects.filter(sold_pass=sold, invoice__isnull=True, skipped=False).update(
        skipped=True, next_attempt_on=None
    )


@transaction.atomic
def passes_expire(*, today: dt.date | None = None) -> int:
    """The daily job (SPEC 5.4): passes whose expiry date has passed (in the clinic's time zone)
    stop covering visits and their unused value moves to breakage revenue. Idempotent: an
    expired pass is not active, so a second run the same day finds nothing."""
    today = today or clinic_today()
    count = 0
    for pk in (
        Pass.objects.filter(status=Status.ACTIVE, expires_on__lt=today)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        sold = lock_pass(pk)
        if sold.status != Status.ACTIVE:
            continue
        before = activity.snapshot(sold)
        account = accounts.DEFERRED_PACKAGES
        _forfeit(
            sold,
            kind="pass_expired",
            memo=f"{sold.name} expired on {sold.expires_on}",
            lines_for=lambda v: [Line(account, debit=v), Line(accounts.BREAKAGE, credit=v)],
        )
        expected_breakage_settle(
            sold, memo=f"{sold.name} expired: breakage recognised ahead, settled"
        )
        Pass.objects.filter(pk=pk).update(status=Status.EXPIRED, ended_at=clock.now())
        _cancel_instalments(sold)
        sold.refresh_from_db()
        activity.record(
            actor=None, verb="expired", obj=sold, before=before, after=activity.snapshot(sold)
        )
        count += 1
    return count


def refund_suggestions(sold: Pass) -> dict:
    """SPEC 5.4's suggestion (price ÷ quantity × remaining uses) next to 9.12's rule (used
    sessions re-priced at the single-visit price, the rest refunded),
    both within what was collected."""
    collected = pass_collected_minor(sold)
    unused = max(sold.remaining or 0, 0)
    remaining = (
        unused + sold.reserved_count
    )  # reserved uses are detached first, so they count (and say so)
    quantity = sold.quantity or 1
    simple = sold.price_minor * remaining // quantity

    def single_visit_price(treatment) -> int:  # what the visit costs alone, its taxes included
        rates = [t.rate for t in treatment.taxes.all()]
        return line_amounts(
            gross=treatment.price_minor, rates=rates, inclusive=treatment.tax_inclusive
        ).total

    if (
        sold.face_value_minor is not None
    ):  # a value package: the price in proportion to the value left
        value_left = max(sold.value_left, 0) + sold.value_reserved_minor
        simple = (
            sold.price_minor * value_left // sold.face_value_minor if sold.face_value_minor else 0
        )
    used = sold.redemptions.filter(status=Redemption.Status.POSTED).select_related(
        "item__treatment"
    )
    used_full_price = sum(
        single_visit_price(r.item.treatment)
        for r in used.prefetch_related("item__treatment__taxes")
    )
    by_rule = max(0, collected - used_full_price)
    return {
        "collected": collected,
        "suggested": min(simple, collected),
        "by_rule": min(by_rule, collected),
        "remaining": remaining,
        "unused": unused,
        "reserved": sold.reserved_count,
        "used_at_full_price": used_full_price,
        "value_left": None if sold.face_value_minor is None else value_left,
        "value_reserved": sold.value_reserved_minor,
    }


def _credit_paid_before(sold: Pass, amount: int, counter) -> None:
    """Refund step one for money collected by the previous system: it becomes the patient's credit
    as an unapplied payment (so step two refunds it like any credit), out of deferred revenue."""

    payment = Payment.objects.create(
        patient_id=sold.patient_id,
        method=Payment.Method.OTHER,
        amount_minor=amount,
        received_at=clock.now(),
        reference=f"Refund of {sold.name} (paid before the switch)"[:120],
    )
    transaction_post(
        kind="pass_taken_back",
        source=sold,
        memo=f"{sold.name} refunded: paid before the switch, to credit",
        lines=[
            *counter(amount),
            Line(accounts.PATIENT_CREDIT, credit=amount, patient_id=payment.patient_id),
        ],
    )


@transaction.atomic
def pass_refund(
    *, actor, sold_pass: Pass, amount_minor: int, detach_future: bool = False, reason: str = ""
) -> Pass:
    """Step one of a refund (SPEC 5.4): `amount_minor` (0 to what was collected) becomes the
    patient's credit and the pass ends (remaining uses are gone; used ones stay used). Step two is
    refunding that credit's payment (billing's payment_refund)."""
    require(actor, Action.REFUND)
    invoices = pass_invoices(sold_pass)
    lock_invoices([i.pk for i in invoices])  # the fixed order: invoices, then the pass
    sold = lock_pass(sold_pass.pk)
    _active(sold, "refunded")
    reserved = _refund_checked(sold, amount_minor, detach_future=detach_future)
    before = activity.snapshot(sold)
    for redemption in reserved:
        redemption_void(redemption)
    sold.refresh_from_db()
    _refund_to_credit(sold, invoices, amount_minor)
    expected_breakage_settle(sold, memo=f"{sold.name} refunded: breakage recognised ahead, settled")
    _end_refunded(sold)
    _cancel_instalments(sold)
    activity.record(
        actor=actor,
        verb="refunded",
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "amount_minor": amount_minor, "reason": reason[:200]},
    )
    return sold


def _refund_checked(sold: Pass, amount_minor: int, *, detach_future: bool) -> list[Redemption]:
    """The pass's reserved uses (refused unless they are to be detached), once the amount is
    checked to be at most what was collected."""
    reserved = list(
        sold.redemptions.filter(status=Redemption.Status.RESERVED).select_related(
            "visit__appointment"
        )
    )
    if reserved and not detach_future:
        dates = ", ".join(f"{r.visit_date:%Y-%m-%d}" for r in reserved)
        raise Conflict(
            f"{sold.name} is attached to booked visits ({dates}). Detach it from them first "
            "(tick “detach from future appointments”).",
            code="has_reservations",
        )
    collected = pass_collected_minor(sold)
    if not 0 <= amount_minor <= collected:
        raise ValidationFailed(
            f"Refund between {money_text(0)} and {money_text(collected)}, what was collected for "
            f"{sold.name}.",
            fields={"amount_minor": ["Out of range."]},
        )
    return reserved


def _refund_to_credit(sold: Pass, invoices, amount_minor: int) -> None:
    """`amount_minor` back to the patient's credit, from the newest invoice first; the deferred
    value of the unused uses left over after it, the clinic keeps (breakage)."""
    deferred_left = still_deferred(sold)
    state = {"deferred": deferred_left}

    def counter(net: int) -> list[Line]:
        # The taken-back net leaves deferred revenue first; beyond that it is revenue given back.
        from_deferred = min(net, state["deferred"])
        state["deferred"] -= from_deferred
        return [
            Line(accounts.DEFERRED_PACKAGES, debit=from_deferred),
            Line(accounts.revenue(sold.income_category_id), debit=net - from_deferred),
        ]

    # Each issued invoice is reduced to what stays paid: its unpaid balance is cancelled and the
    # refunded amount goes back as credit, newest invoice first.
    to_give = amount_minor
    for invoice in sorted((i for i in invoices if not i.deleted_at), key=lambda i: -i.pk):
        invoice.refresh_from_db()
        give = min(to_give, invoice.applied_minor)
        to_give -= give
        if invoice.balance_minor + give:
            invoice_take_back(
                invoice=invoice,
                amount_minor=invoice.balance_minor + give,
                to_credit_minor=give,
                source=sold,
                description=f"Refund of {sold.name}",
                memo=f"{sold.name} refunded",
                counter_lines=counter,
            )
    if to_give:  # paid before the switch (an imported package, no invoice in Carnet): to credit
        _credit_paid_before(sold, to_give, counter)
    if state["deferred"]:  # value of unused uses the clinic keeps
        transaction_post(
            kind="pass_refund_kept",
            source=sold,
            memo=f"{sold.name} refunded: value kept",
            lines=[
                Line(accounts.DEFERRED_PACKAGES, debit=state["deferred"]),
                Line(accounts.BREAKAGE, credit=state["deferred"]),
            ],
        )


def _end_refunded(sold: Pass) -> None:
    """The remaining uses (or value) forfeited and the pass ended as refunded."""
    sold.refresh_from_db()
    sold.forfeited_count += max(sold.remaining or 0, 0)
    if sold.face_value_minor is not None:
        sold.value_forfeited_minor += max(sold.value_left, 0)
    sold.recognised_minor = sold.deferred_minor
    sold.status, sold.ended_at = Status.REFUNDED, clock.now()
    sold.save(
        update_fields=[
            "forfeited_count",
            "value_forfeited_minor",
            "recognised_minor",
            "status",
            "ended_at",
        ]
    )


@transaction.atomic
def pass_delete(*, actor, sold_pass: Pass) -> Pass:
    """Delete an unpaid purchase (SPEC 5.4): its invoices are deleted (reversed in the ledger) and
    the pass is gone from the patient's list. Refused while a payment is applied or it was used."""
    require(actor, Action.INVOICE_DELETE)
    invoices = [i for i in pass_invoices(sold_pass) if not i.deleted_at]
    lock_invoices([i.pk for i in invoices])
    sold = lock_pass(sold_pass.pk)
    _active(sold, "deleted")
    if postings_for_source(sold).filter(transaction__kind="opening_balance").exists():
        # Its value is an opening balance, not an invoice to reverse:
        # only undoing its import takes it out.
        raise Conflict(
            f"{sold.name} was imported from the previous system: refund it, or undo its import "
            "(Settings → Import data) while it is unused.",
            code="imported_pass",
        )
    if sold.transferred_from_id:  # its value came from another pass, not from an invoice to reverse
        raise Conflict(
            f"{sold.name} was received by transfer, not bought: it cannot be deleted. Refund it, "
            "or transfer it on.",
            code="received_by_transfer",
        )
    for invoice in invoices:
        invoice.refresh_from_db()
        if invoice.applied_minor:
            raise Conflict(
                f"{invoice} for {sold.name} has {money_text(invoice.applied_minor)} of payments "
                "applied. Refund the package instead, or unapply those payments first.",
                code="invoice_has_payments",
            )
    if sold.posted_count:
        raise Conflict(
            f"{sold.name} has been used; refund it instead of deleting it.", code="pass_used"
        )
    if sold.reserved_count:
        raise Conflict(
            f"{sold.name} is attached to booked visits; remove it from them first.",
            code="has_reservations",
        )
    before = activity.snapshot(sold)
    for invoice in invoices:
        invoice_delete(actor=actor, invoice=invoice, pass_sale=True)
    sold.status, sold.ended_at = Status.DELETED, clock.now()
    sold.recognised_minor = (
        sold.deferred_minor
    )  # the deferred value left with the reversed invoices
    sold.save(update_fields=["status", "ended_at", "recognised_minor"])
    activity.record(
        actor=actor, verb="deleted", obj=sold, before=before, after=activity.snapshot(sold)
    )
    return sold


@transaction.atomic
def pass_transfer(*, actor, sold_pass: Pass, to_patient) -> Pass:
    """Move a paid package's remaining uses to another patient (SPEC 9.5): a new pass for them with
    the same terms and expiry, carrying the remaining deferred value;
    this one ends as transferred."""
    require(actor, Action.PASS_TRANSFER)
    sold = lock_pass(sold_pass.pk)
    _active(sold, "transferred")
    holds_value = sold.face_value_minor is not None
    remaining = _transfer_checked(sold, to_patient)
    value = still_deferred(sold)
    now = clock.now()
    before = activity.snapshot(sold)
    new = _pass_received(actor, sold, to_patient, remaining=remaining, value=value, now=now)
    gone = (
        {"value_forfeited_minor": F("value_forfeited_minor") + remaining}
        if holds_value
        else {"forfeited_count": F("forfeited_count") + remaining}
    )
    Pass.objects.filter(pk=sold.pk).update(
        **gone, recognised_minor=F("deferred_minor"), status=Status.TRANSFERRED, ended_at=now
    )
    what = f"{money_text(remaining)} of value" if holds_value else f"{remaining} uses"
    expected_breakage_settle(
        sold, memo=f"{sold.name} transferred: breakage recognised ahead, settled"
    )
    if value:
        transaction_post(
            kind="pass_transferred",
            source=sold,
            at=now,
            memo=f"{sold.name}: {what} to {to_patient} (pass #{new.pk})",
            lines=[
                Line(accounts.DEFERRED_PACKAGES, debit=value),
                Line(accounts.DEFERRED_PACKAGES, credit=value),
            ],
        )
    sold.refresh_from_db()
    activity.record(
        actor=actor,
        verb="transferred",
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "to_pass": new.pk, "to_patient": to_patient.pk},
    )
    activity.record(actor=actor, verb="received by transfer", obj=new, after=activity.snapshot(new))
    return new


def _transfer_checked(sold: Pass, to_patient) -> int:
    """What is left to transfer (uses, or value for a package that holds one), once the pass is
    checked to be transferable, to another patient, fully paid and attached to no booked visit."""

    if not sold.transferable:
        raise Conflict(
            f"{sold.name} is not transferable (the template does not allow it).",
            code="not_transferable",
        )
    if to_patient.pk == sold.patient_id:
        raise ValidationFailed(
            "Choose another patient to transfer to.", fields={"to_patient_id": ["Same patient."]}
        )
    if not pass_fully_paid(sold):
        raise Conflict(
            f"{sold.name} is not fully paid; collect the balance before transferring it.",
            code="not_paid",
        )
    if sold.reserved_count:
        raise Conflict(
            f"{sold.name} is attached to booked visits; remove it from them first.",
            code="has_reservations",
        )
    holds_value = sold.face_value_minor is not None
    remaining = sold.value_left if holds_value else sold.remaining or 0
    if remaining <= 0:
        raise Conflict(
            f"{sold.name} has no {'balance' if holds_value else 'uses'} left to transfer.",
            code="used_up_value" if holds_value else "used_up",
        )
    return remaining


def _pass_received(actor, sold: Pass, to_patient, *, remaining: int, value: int, now) -> Pass:
    """The new pass: the same terms and expiry, what is left of the old one (eligible items with a
    limit keep what is left of it) and its deferred value."""
    holds_value = sold.face_value_minor is not None
    terms = pass_terms(sold)
    # What is left of it, paid in full by the first owner: one instalment, nothing to pay.
    terms.update(
        quantity=None if holds_value else remaining,
        face_value_minor=remaining if holds_value else None,
        instalments=1,
    )
    new = Pass.objects.create(
        **terms,
        patient=to_patient,
        price_minor=0,
        net_minor=value,
        purchase_date=clinic_today(),
        purchased_at=now,
        expires_on=sold.expires_on,
        transferred_from=sold,
        deferred_minor=value,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    new.taxes.set(sold.taxes.all())
    PassItem.objects.bulk_create(items_copy(new, sold.items.all(), left_only=True))
    return new


@transaction.atomic
def pass_shares_set(*, actor, sold_pass: Pass, patients: list) -> Pass:
    """SPEC 9.4: the family members the owner allows to redeem this pass (replaces the list)."""

    require(actor, Action.SELL)
    sold = lock_pass(sold_pass.pk)
    if patients and not sold.family_sharing:
        raise Conflict(
            f"{sold.name} cannot be shared: its template does not allow family sharing.",
            code="sharing_not_allowed",
        )
    family = family_ids(sold.patient)
    for patient in patients:
        if patient.pk not in family:
            raise ValidationFailed(
                f"{patient} is not linked to {sold.patient} as family. Link them on the "
                "patient's profile first.",
                fields={"patient_ids": ["Not family."]},
            )
    before = sorted(sold.shares.values_list("patient_id", flat=True))
    sold.shares.exclude(patient__in=patients).delete()
    for patient in patients:
        PassShare.objects.get_or_create(sold_pass=sold, patient=patient)
    activity.record(
        actor=actor,
        verb="sharing changed",
        obj=sold,
        before={"shared_with": before},
        after={"shared_with": sorted(p.pk for p in patients)},
    )
    return sold
