"""Staff pages for memberships (SPEC 6.2–6.4, 9.7): selling one from the patient's Billing tab,
and one membership's page — value, term, uses this cycle, billing events newest first, history of
uses — with its actions (pause/resume, cancel, refund a cycle, change the card or mode, delete).
Each action is shown only when allowed and enforced again by its service; domain errors become
visible messages."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core.errors import NotFound
from carnet.core.idempotency import claim_form_key, new_form_key
from carnet.core.pages import run_action, save_form, save_once, staff_required
from carnet.core.permissions import Action, can
from carnet.passes.charging import pass_charge_due
from carnet.passes.cycles import billed_cycles, cycle_preview, cycle_start
from carnet.passes.dunning import cycle_state, cycle_states
from carnet.passes.models import Pass, PassInvoice
from carnet.passes.selectors import pass_history
from carnet.people.selectors import patient_get

from . import overdue, retry, writeoff
from . import services as ms
from .card_requests import card_update_request
from .charge_preview import charges_preview as charges_preview_for
from .forms import (
    CancelForm,
    CycleRefundForm,
    MembershipSellForm,
    PauseForm,
    PaymentForm,
)

Mode = Pass.PaymentMode
Status = Pass.Status


def membership_for_page(pk: int) -> Pass:
    sold = (
        Pass.objects.filter(kind=Pass.Kind.MEMBERSHIP)
        .exclude(status=Status.DELETED)
        .select_related("patient", "sold_by", "template", "card", "location")
        .filter(pk=pk)
        .first()
    )
    if sold is None:
        raise NotFound(f"No membership with id {pk}.", code="membership_not_found")
    return sold


def _to_detail(pk: int):
    return redirect("memberships:detail", pk=pk)


# ---- selling ------------------------------------------------------------------------------------


def charge_due_message(sold: Pass, clinic) -> tuple[str, str]:
    """Charge the due cycle of an automatic membership now (outside any transaction)
    and say how it went."""
    run = pass_charge_due(sold_pass=sold)
    if run.charged:
        rows = PassInvoice.objects.filter(pk__in=run.charged).select_related("invoice")
        total = sum(r.invoice.total_minor for r in rows)
        return (
            "success",
            f"The current cycle was charged to {sold.card}: {clinic.money(total)} paid.",
        )
    if run.declined:
        row = PassInvoice.objects.get(pk=run.declined[-1])
        retry = (
            f" The card is tried again on {row.next_attempt_on:%Y-%m-%d}."
            if row.next_attempt_on
            else ""
        )
        return "error", (
            f"The card was declined: {row.last_error} The cycle's invoice stays unpaid.{retry} "
            "Take the payment by hand or change the card."
        )
    failed = sold.pass_invoices.filter(
        invoice__isnull=False, next_attempt_on__isnull=False
    ).exclude(last_error="")
    if failed.exists():
        return "error", (
            f"The card could not be charged just now ({failed.first().last_error}); the daily job "
            "tries again. The cycle's invoice stays unpaid until then."
        )
    return "info", "Nothing is due now: the card is charged when the next cycle starts."


def has_charge_due(sold: Pass) -> bool:
    """Whether an issued, unpaid cycle of this membership is waiting for a card charge."""
    return any(
        r.invoice.balance_minor > 0
        for r in sold.pass_invoices.select_related("invoice").filter(
            invoice__isnull=False, invoice__deleted_at__isnull=True, next_attempt_on__isnull=False
        )
    )


@staff_required(Action.SELL)
def membership_sell(request, pk: int):
    patient, clinic = patient_get(pk), clinic_get()
    form = MembershipSellForm(
        request.POST or None,
        clinic=clinic,
        patient=patient,
        user=request.user,
        initial={
            "form_key": new_form_key(),
            "start_date": clinic_today(),
            "payment_mode": Mode.MANUAL,
        },
    )
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        outcome, result = save_once(
            request,
            form,
            lambda: ms.membership_sell(
                actor=request.user,
                patient=patient,
                template=d["template"],
                start_date=d["start_date"],
                payment_mode=d["payment_mode"],
                card=d["card"],
                location=d["location"],
                sold_by=d["sold_by"],
                intro_override=d.get("intro_override", False),
            ),
        )
        if outcome == "denied":
            return result
        if outcome == "repeat":
            return redirect("passes:patient_passes", pk=pk)
        if outcome == "ok":
            sold = result
            issued = sold.pass_invoices.filter(invoice__isnull=False).count()
            past = " (past cycles are invoiced at once and paid by hand)" if issued > 1 else ""
            billed = (
                f"{issued} cycle invoice{'s' if issued != 1 else ''} issued{past}"
                if issued
                else "nothing is invoiced until it starts"
            )
            messages.success(
                request,
                f"Sold {sold.name} to {patient.full_name}, starting "
                f"{sold.start_date:%Y-%m-%d}: {billed}.",
            )
            if sold.payment_mode == Mode.AUTOMATIC and has_charge_due(sold):
                level, text = charge_due_message(sold, clinic)
                getattr(messages, level)(request, text)
            return _to_detail(sold.pk)
    return render(
        request,
        "passes/membership_sell.html",
        {
            "patient": patient,
            "form": form,
            "clinic": clinic,
            "today": clinic_today(),
            "has_cards": form.fields["card"].queryset.exists(),
        },
    )


# ---- one membership -----------------------------------------------------------------------------


def _next_billing(sold: Pass, rows: list[PassInvoice]) -> dt.date | None:
    """When the next cycle is invoiced: an existing row not yet invoiced, else the next cycle the
    term, a cancellation and a pause allow (None when no more cycles come)."""
    if sold.status != Status.ACTIVE:
        return None
    waiting = [r for r in rows if r.invoice_id is None and not r.skipped]
    if waiting:
        return min(r.due_on for r in waiting)
    billed = sum(1 for r in rows if not r.skipped)
    pauses = list(sold.pauses.all())
    seq = len(rows)
    for _ in range(120):
        seq += 1
        if sold.term_cycles is not None and billed >= sold.term_cycles:
            return None
        start = cycle_start(sold, seq - 1)
        if sold.ends_after is not None and start > sold.ends_after:
            return None
        if not any(p.from_seq <= seq < p.from_seq + p.cycles for p in pauses):
            return start
    return None


def _uses_now(sold: Pass, today: dt.date) -> dict:
    state, row, left = cycle_preview(sold, today)
    if sold.status != Status.ACTIVE:  # cancelled (or ended otherwise): nothing more is covered
        state = "ended"
    allowed = row.uses_allowed if row is not None else sold.uses_per_cycle
    used = row.used_count if row is not None else 0
    rolled = 0
    if (
        row is not None
        and allowed is not None
        and sold.uses_per_cycle is not None
        and not row.skipped
    ):
        rolled = max(allowed - sold.uses_per_cycle, 0)
    return {
        "state": state,
        "row": row,
        "used": used,
        "allowed": allowed,
        "left": left,
        "rolled": rolled,
        "unlimited": allowed is None and state == "ok",
    }


def membership_summary(sold: Pass, today: dt.date | None = None) -> dict:
    """What a list row shows of a membership: uses this cycle,
    the next billing date, what is owed."""
    today = today or clinic_today()
    rows = list(sold.pass_invoices.all())
    owing = sum(
        max(r.invoice.balance_minor, 0) for r in rows if r.invoice_id and not r.invoice.deleted_at
    )
    return {
        "uses": _uses_now(sold, today),
        "next_billing": _next_billing(sold, sorted(rows, key=lambda r: r.seq)),
        "owing_minor": owing,
        "billing": cycle_states(rows, today=today),
        "today": today,
    }


def _events(request, sold: Pass, rows: list[PassInvoice], today: dt.date) -> list[dict]:
    may_refund = can(request.user, Action.REFUND)
    out = []
    for row in sorted(rows, key=lambda r: -r.seq):
        invoice = row.invoice if row.invoice_id and not row.invoice.deleted_at else None
        out.append(
            {
                "row": row,
                "invoice": invoice,
                "last_day": row.period_end - dt.timedelta(days=1) if row.period_end else None,
                "current": row.period_start <= today < row.period_end
                if row.period_start
                else False,
                "refund": may_refund and invoice is not None and invoice.applied_minor > 0,
                "write_off": may_refund
                and invoice is not None
                and invoice.balance_minor > 0
                and not row.written_off_at,
                "form_key": new_form_key(),
                "state": cycle_state(row, today=today),
            }
        )
    return out


def _detail(request, sold: Pass, *, pause_form=None):
    clinic, today = clinic_get(), clinic_today()
    rows = list(sold.pass_invoices.select_related("invoice").order_by("seq"))
    issued = [r.invoice for r in rows if r.invoice_id and not r.invoice.deleted_at]
    billed = billed_cycles(sold)
    pause = sold.pauses.filter(resumed_at__isnull=True).first()
    active = sold.status == Status.ACTIVE
    user = request.user
    collected = sum(i.applied_minor for i in issued)
    history = pass_history(sold)
    return render(
        request,
        "passes/membership_detail.html",
        {
            "sold": sold,
            "clinic": clinic,
            "today": today,
            "billed": billed,
            "remaining_cycles": None
            if sold.term_cycles is None
            else max(sold.term_cycles - billed, 0),
            "next_billing": _next_billing(sold, rows),
            "pause": pause,
            "paused_until": cycle_start(sold, pause.from_seq - 1 + pause.cycles) if pause else None,
            "value_minor": sum(i.total_minor for i in issued),
            "collected_minor": collected,
            "owing_minor": sum(max(i.balance_minor, 0) for i in issued),
            "uses": _uses_now(sold, today),
            "events": _events(request, sold, rows, today),
            "history": history,
            "plan_changes": list(sold.plan_changes.all()),
            "freeze_fee": ms.freeze_fee_words(sold),
            "overdue": overdue.overdue_state(sold, today=today),
            "retry_days": clinic.retry_days(),
            "override_default": today + dt.timedelta(days=7),
            "pause_form": pause_form or PauseForm(most=sold.pause_max_cycles),
            "form_key": new_form_key(),
            "show": {
                "pause": can(user, Action.SELL) and active and sold.pause_allowed and pause is None,
                "resume": can(user, Action.SELL) and active and pause is not None,
                "cancel": can(user, Action.SELL) and active,
                "payment": can(user, Action.SELL) and active,
                "plan_change": can(user, Action.SELL) and active and not sold.ends_after,
                "delete": can(user, Action.INVOICE_DELETE)
                and collected == 0
                and not sold.posted_count,
                "delete_refused": can(user, Action.INVOICE_DELETE)
                and (collected > 0 or sold.posted_count > 0),
            },
        },
    )


@staff_required(Action.INVOICE_VIEW)
def membership_detail(request, pk: int):
    return _detail(request, membership_for_page(pk))


@require_POST
@staff_required(Action.SELL)
def membership_pause(request, pk: int):
    sold = membership_for_page(pk)
    form = PauseForm(request.POST, most=sold.pause_max_cycles)
    if not form.is_valid():
        messages.error(request, ms.pause_limit_words(sold))
        return _to_detail(pk)
    n = form.cleaned_data["cycles"]
    _, denied = run_action(
        request,
        lambda: ms.membership_pause(actor=request.user, sold_pass=sold, cycles=n),
        success=f"{sold.name} is paused for {n} cycle{'s' if n > 1 else ''}: they are not billed "
        "and the end moves out.",
    )
    return denied or _to_detail(pk)


@require_POST
@staff_required(Action.SELL)
def membership_resume(request, pk: int):
    sold = membership_for_page(pk)
    _, denied = run_action(
        request,
        lambda: ms.membership_resume(actor=request.user, sold_pass=sold),
        success=f"{sold.name} resumed: the next cycles are billed again.",
    )
    return denied or _to_detail(pk)


@require_POST
@staff_required(Action.SELL)
def membership_past_due_override(request, pk: int):
    """Let a past-due membership cover new bookings again until a date
    (issue 22 point 2; logged)."""
    sold = membership_for_page(pk)
    try:
        until = dt.date.fromisoformat(request.POST.get("until", ""))
    except ValueError:
        messages.error(request, "Choose the last day it may cover new bookings (a date).")
        return _to_detail(pk)
    _, denied = run_action(
        request,
        lambda: overdue.membership_past_due_override(
            actor=request.user, sold_pass=sold, until=until
        ),
        success=f"{sold.name} covers new bookings again until {until:%Y-%m-%d}.",
    )
    return denied or _to_detail(pk)


@require_POST
@staff_required(Action.PAYMENT_TAKE)
def membership_retry_now(request, pk: int):
    """Charge a past-due membership's card now (issue 22 point 4): the card attempt's own path, the
    gateway called outside any transaction (this view holds none).
    Back to where it was asked from."""
    sold = membership_for_page(pk)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}
    ) or not back.startswith("/"):
        back = reverse("memberships:detail", args=[pk])
    # The key is claimed in its own commit before the card is tried (no transaction may wrap a
    # gateway call), so a double click or a reload tries the card once, not once more per click.
    key = request.POST.get("form_key", "")
    if not claim_form_key(user=request.user, key=f"retry:{pk}:{key}" if key else ""):
        messages.info(request, "That was already done; the card was not tried twice.")
        return redirect(back)
    run, denied = run_action(
        request, lambda: retry.membership_retry_now(actor=request.user, sold_pass=sold)
    )
    if denied:
        return denied
    if run is not None:
        if run.charged and not run.declined:
            messages.success(
                request, f"{sold.name}: the card was charged; nothing is past due now."
            )
        elif run.declined:
            reason = (
                PassInvoice.objects.filter(pk=run.declined[-1])
                .values_list("last_error", flat=True)
                .first()
            )
            messages.error(
                request,
                f"{sold.name}: the card was declined again — {reason} Take another payment, "
                "or ask the patient for a new card.",
            )
        else:
            messages.info(
                request,
                f"{sold.name}: the card could not be charged just now (no answer from the card "
                "processor); it is checked again shortly. Nothing was charged twice.",
            )
    return redirect(back)


@require_POST
@staff_required(Action.REFUND)
def cycle_write_off(request, cycle_pk: int):
    """Write off what a cycle still owes (issue 22 point 5). Done once:
    a repeat finds it written off."""
    row = _cycle(cycle_pk)
    _, denied = run_action(
        request,
        lambda: writeoff.cycle_write_off(
            actor=request.user, row=row, reason=request.POST.get("reason", "")
        ),
        success=f"Cycle from {row.period_start:%Y-%m-%d} written off: it is not charged again "
        "and gives no more uses.",
        once=True,
    )
    return denied or _to_detail(row.sold_pass_id)


@staff_required(Action.SELL)
def membership_cancel(request, pk: int):
    sold, clinic = membership_for_page(pk), clinic_get()
    form = CancelForm(request.POST or None, initial={"form_key": new_form_key()})
    if request.method == "POST" and form.is_valid():
        at_end = form.cleaned_data["when"] == "cycle_end"
        outcome, result = save_once(
            request,
            form,
            lambda: ms.membership_cancel(actor=request.user, sold_pass=sold, at_cycle_end=at_end),
        )
        if outcome == "denied":
            return result
        if outcome == "repeat":
            return _to_detail(pk)
        if outcome == "ok":
            if result.status == Status.CANCELLED:
                text = (
                    f"{sold.name} is cancelled; its benefits ended on {result.ends_after:%Y-%m-%d}."
                )
            else:
                text = (
                    f"{sold.name} is cancelled at the end of the current cycle: it covers visits "
                    f"until {result.ends_after:%Y-%m-%d} and is not billed again."
                )
            messages.success(request, text)
            return _to_detail(pk)
    today = clinic_today()
    current = sold.pass_invoices.filter(period_start__lte=today, period_end__gt=today).first()
    return render(
        request,
        "passes/membership_cancel.html",
        {
            "sold": sold,
            "clinic": clinic,
            "form": form,
            "warning": ms.cancel_warning(sold),
            "cycle_last_day": current.period_end - dt.timedelta(days=1) if current else None,
            "today": today,
        },
    )


def _cycle(pk: int) -> PassInvoice:
    row = (
        PassInvoice.objects.filter(pk=pk, sold_pass__kind=Pass.Kind.MEMBERSHIP)
        .exclude(sold_pass__status=Status.DELETED)
        .select_related("invoice", "sold_pass__patient")
        .first()
    )
    if row is None:
        raise NotFound(f"No membership cycle with id {pk}.", code="cycle_not_found")
    return row


@staff_required(Action.REFUND)
def cycle_refund(request, cycle_pk: int):
    row, clinic = _cycle(cycle_pk), clinic_get()
    sold = row.sold_pass
    suggestion = ms.cycle_refund_suggestion(row)
    form = CycleRefundForm(
        request.POST or None,
        currency=clinic.currency,
        initial={"form_key": new_form_key(), "amount": suggestion["suggested"]},
    )
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        outcome, result = save_once(
            request,
            form,
            lambda: ms.cycle_refund(
                actor=request.user, row=row, amount_minor=d["amount"], reason=d["reason"]
            ),
        )
        if outcome == "denied":
            return result
        if outcome == "repeat":
            return _to_detail(sold.pk)
        if outcome == "ok":
            messages.success(
                request,
                f"Cycle from {row.period_start:%Y-%m-%d} refunded: {clinic.money(d['amount'])} "
                f"is now {sold.patient.full_name}'s credit. Refund the payment from the "
                "Billing tab to return the money.",
            )
            return _to_detail(sold.pk)
    return render(
        request,
        "passes/membership_refund.html",
        {
            "sold": sold,
            "row": row,
            "clinic": clinic,
            "form": form,
            "s": suggestion,
            "last_day": row.period_end - dt.timedelta(days=1) if row.period_end else None,
        },
    )


@staff_required(Action.SELL)
def membership_payment(request, pk: int):
    sold, clinic = membership_for_page(pk), clinic_get()
    form = PaymentForm(
        request.POST or None,
        patient=sold.patient,
        initial={"payment_mode": sold.payment_mode, "card": sold.card_id},
    )
    result, denied = save_form(
        request,
        form,
        lambda d: ms.membership_payment_set(
            actor=request.user, sold_pass=sold, payment_mode=d["payment_mode"], card=d["card"]
        ),
        success=lambda sold: (
            f"{sold.name} is now paid automatically by {sold.card}."
            if sold.payment_mode == Mode.AUTOMATIC
            else f"{sold.name} is now paid by hand at the desk."
        ),
    )
    if denied:
        return denied
    if result is not None:
        if result.payment_mode == Mode.AUTOMATIC and has_charge_due(result):
            level, text = charge_due_message(result, clinic)
            getattr(messages, level)(request, text)
        return _to_detail(pk)
    return render(
        request,
        "passes/membership_payment.html",
        {
            "sold": sold,
            "clinic": clinic,
            "form": form,
            "has_cards": form.fields["card"].queryset.exists(),
        },
    )


@require_POST
@staff_required(Action.INVOICE_DELETE)
def membership_delete(request, pk: int):
    sold = membership_for_page(pk)
    _, denied = run_action(
        request,
        lambda: ms.membership_delete(actor=request.user, sold_pass=sold),
        success=f"{sold.name} deleted; its unpaid invoices are deleted.",
    )
    if denied:
        return denied
    sold.refresh_from_db()
    if sold.status == Status.DELETED:
        return redirect(reverse("passes:patient_passes", kwargs={"pk": sold.patient_id}))
    return _to_detail(pk)


@require_POST
@staff_required(Action.SELL)
def membership_card_request(request, pk: int):
    """Request a new card (issue 22 point 3): the patient is emailed a link to add one."""
    sold = membership_for_page(pk)
    _, denied = run_action(
        request,
        lambda: card_update_request(
            sold_pass=sold, actor=request.user, base_url=request.build_absolute_uri("/")
        ),
        once=True,
        success=f"A link to add a new card for {sold.name} was emailed to {sold.patient.email}.",
    )
    return denied or _to_detail(pk)


@staff_required(Action.INVOICE_VIEW)
def charges_preview(request):
    """Tomorrow's automatic charges (issue 22 point 8), in the clinic's time zone."""
    clinic = clinic_get()
    day = clinic_today() + dt.timedelta(days=1)
    planned = charges_preview_for(day=day)
    return render(
        request,
        "passes/charges_preview.html",
        {
            "clinic": clinic,
            "day": day,
            "planned": planned,
            "total_minor": sum(p.amount_minor for p in planned),
            "problems": sum(1 for p in planned if p.problem),
        },
    )
