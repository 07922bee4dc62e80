"""Staff pages for sold passes (SPEC 5.2, 5.4, 9.4, 9.5, 9.12): the patient's Packages &
Memberships list on the Billing tab, selling a package, and one pass's page with its history and
actions (expiry, two-step refund, delete, transfer, sharing). Each action is shown only when
allowed and enforced again by its service; domain errors become visible messages."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from carnet.billing.forms import RefundForm as PaymentRefundForm
from carnet.billing.models import Payment
from carnet.billing.payments import payment_receive
from carnet.clinic.selectors import clinic_get, clinic_today, location_default
from carnet.core.errors import NotFound, ValidationFailed
from carnet.core.idempotency import new_form_key
from carnet.core.pages import run_action, save_once, staff_required
from carnet.core.permissions import Action, can, staff_of
from carnet.passes.models import Pass, PassInvoice, Redemption
from carnet.passes.selectors import (
    pass_collected_minor,
    pass_fully_paid,
    pass_history,
    pass_invoices,
    pass_paid_minor,
    pass_unlocked,
    passes_for_patient,
)
from carnet.passes.setup.expiry_rules import small_balance_offer
from carnet.people.models import Patient
from carnet.people.selectors import patient_family, patient_get, patient_search

from . import ending
from .forms import ExpiryForm, RefundStepOneForm, SellForm, SharesForm, TransferForm
from .selling import package_sell


def _pass(pk: int, *, memberships: bool = False) -> Pass:
    """A sold package (not deleted). Memberships have their own page and actions (memberships:*)."""
    qs = Pass.objects.exclude(status=Pass.Status.DELETED)
    if not memberships:
        qs = qs.filter(kind=Pass.Kind.PACKAGE)
    sold = (
        qs.select_related("patient", "sold_by", "transferred_from", "template")
        .filter(pk=pk)
        .first()
    )
    if sold is None:
        raise NotFound(f"No package with id {pk}.", code="pass_not_found")
    return sold


def _status(sold: Pass) -> dict:
    """How the lists show one pass: its status word, and whether its uses are unlocked yet."""
    unlocked = pass_unlocked(sold)
    return {
        "pass": sold,
        "unlocked": unlocked,
        "not_paid": sold.status == Pass.Status.ACTIVE
        and unlocked == 0
        and (sold.quantity is not None or sold.face_value_minor is not None),
        "fully_paid": pass_fully_paid(sold),
    }


def _to_detail(pk: int):
    return redirect("passes:detail", pk=pk)


# ---- the patient's list -------------------------------------------------------------------------


@staff_required(Action.INVOICE_VIEW)
def patient_passes(request, pk: int):
    patient = patient_get(pk)
    rows = [_status(p) for p in passes_for_patient(patient)]
    clinic = clinic_get()
    return render(
        request,
        "passes/patient_passes.html",
        {
            "patient": patient,
            "rows": rows,
            "clinic": clinic,
            "today": clinic_today(clinic),
        },
    )


@staff_required(Action.SELL)
def pass_sell(request, pk: int):
    patient, clinic = patient_get(pk), clinic_get()
    staff = staff_of(request.user)
    form = SellForm(
        request.POST or None, clinic=clinic, staff=staff, initial={"form_key": new_form_key()}
    )
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data

        def write():
            # One transaction (save_once's) for the sale and the payment taken with it: a sale
            # without payment is valid on its own, but if the payment the desk asked for fails
            # (say the method is refused) the whole form is refused and the key released, so the
            # desk fixes it and submits again — never a sold-but-unpaid package they did not
            # ask for, nor a second sale on retry. Only in-person methods are offered here, so
            # no gateway call happens inside the transaction.
            sold = package_sell(
                actor=request.user,
                patient=patient,
                template=d["template"],
                sold_by=d["sold_by"],
                expires_on=form.expires_on_choice(),
                location=d.get("location") or location_default(staff=staff),
                intro_override=d.get("intro_override", False),
            )
            if d["pay"] == "now":
                invoices = pass_invoices(sold)
                invoice = invoices[0] if invoices else None
                if invoice is not None and invoice.total_minor:
                    amount = invoice.total_minor if d.get("amount") is None else d["amount"]
                    question = form.credit_confirmed(
                        received=amount, applied=min(amount, invoice.total_minor)
                    )
                    if (
                        question
                    ):  # rolls the sale back with it: nothing is recorded until the desk answers
                        raise ValidationFailed(question)
                    payment_receive(
                        actor=request.user,
                        patient=patient,
                        method=d["method"],
                        amount_minor=amount,
                        reference=d["reference"],
                        allocations=[(invoice, min(amount, invoice.total_minor))],
                        idempotency_key=f"form-{d['form_key']}",
                    )
            return sold

        outcome, result = save_once(request, form, write)
        if outcome == "denied":
            return result
        if outcome == "ok":
            result.refresh_from_db()
            paid = pass_fully_paid(result)
            messages.success(
                request,
                f"Sold {result.name} to {patient.full_name} for {clinic.money(result.price_minor)}"
                + (" — paid." if paid else ". It can be used once its invoice is paid."),
            )
            return _to_detail(result.pk)
        if outcome == "repeat":
            return redirect("passes:patient_passes", pk=pk)
    return render(
        request, "passes/pass_sell.html", {"patient": patient, "form": form, "clinic": clinic}
    )


# ---- one pass -----------------------------------------------------------------------------------


def _future_reservations(sold: Pass):
    return (
        sold.redemptions.filter(status=Redemption.Status.RESERVED)
        .select_related("visit__appointment__treatment")
        .order_by("visit_date", "pk")
    )


def _can(request) -> dict:
    user = request.user
    return {
        "expiry": can(user, Action.PASS_EXPIRY_EDIT),
        "refund": can(user, Action.REFUND),
        "delete": can(user, Action.INVOICE_DELETE),
        "transfer": can(user, Action.PASS_TRANSFER),
        "share": can(user, Action.SELL),
    }


def _detail(request, sold: Pass, *, expiry_form=None, shares_form=None, status=200):
    sold.refresh_from_db()
    clinic = clinic_get()
    state = _status(sold)
    family = [p for _, p, _ in patient_family(sold.patient)]
    shared = list(sold.shares.select_related("patient"))
    active = sold.status == Pass.Status.ACTIVE
    has_payments = any(i.applied_minor for i in pass_invoices(sold) if not i.deleted_at)
    may = _can(request)
    return render(
        request,
        "passes/pass_detail.html",
        {
            "sold": sold,
            "clinic": clinic,
            **state,
            "paid_minor": pass_paid_minor(sold),
            "instalments": PassInvoice.objects.filter(sold_pass=sold).select_related("invoice"),
            "items": sold.items.select_related("treatment"),
            "history": pass_history(sold),
            "shared": shared,
            "family": family,
            "expiry_form": expiry_form
            or ExpiryForm(
                initial={"expires_on": sold.expires_on, "clear": sold.expires_on is None}
            ),
            "shares_form": shares_form
            or SharesForm(family=family, initial={"patients": [s.patient for s in shared]}),
            "show": {
                "expiry": may["expiry"]
                and sold.status in (Pass.Status.ACTIVE, Pass.Status.EXPIRED),
                "refund": may["refund"] and active and has_payments,
                "refund_step_two": may["refund"] and sold.status == Pass.Status.REFUNDED,
                "delete": may["delete"] and active and not has_payments and not sold.posted_count,
                "transfer": may["transfer"] and active and sold.transferable,
                "share": may["share"] and active and sold.family_sharing and bool(family),
            },
        },
        status=status,
    )


@staff_required(Action.INVOICE_VIEW)
def pass_detail(request, pk: int):
    sold = _pass(pk, memberships=True)
    if sold.kind == Pass.Kind.MEMBERSHIP:
        return redirect("memberships:detail", pk=pk)
    return _detail(request, sold)


@require_POST
@staff_required(Action.PASS_EXPIRY_EDIT)
def pass_expiry(request, pk: int):
    sold = _pass(pk)
    form = ExpiryForm(request.POST)
    if not form.is_valid():
        errors = list(form.non_field_errors()) or [e for errs in form.errors.values() for e in errs]
        messages.error(request, errors[0])
        return _to_detail(pk)
    expires_on = None if form.cleaned_data["clear"] else form.cleaned_data["expires_on"]
    _, denied = run_action(
        request,
        lambda: ending.pass_expiry_set(actor=request.user, sold_pass=sold, expires_on=expires_on),
        success=f"{sold.name} now expires on {expires_on:%Y-%m-%d}."
        if expires_on
        else f"{sold.name} no longer expires.",
    )
    return denied or _to_detail(pk)


@require_POST
@staff_required(Action.INVOICE_DELETE)
def pass_delete(request, pk: int):
    sold = _pass(pk)
    _, denied = run_action(
        request,
        lambda: ending.pass_delete(actor=request.user, sold_pass=sold),
        success=f"{sold.name} deleted; its invoice is deleted and the sale reversed.",
    )
    if denied:
        return denied
    sold.refresh_from_db()
    if sold.status == Pass.Status.DELETED:
        return redirect("passes:patient_passes", pk=sold.patient_id)
    return _to_detail(pk)


@require_POST
@staff_required(Action.SELL)
def pass_shares(request, pk: int):
    sold = _pass(pk)
    family = [p for _, p, _ in patient_family(sold.patient)]
    form = SharesForm(request.POST, family=family)
    if not form.is_valid():
        messages.error(request, "Choose family members from the list.")
        return _to_detail(pk)
    patients = list(form.cleaned_data["patients"])
    names = ", ".join(p.full_name for p in patients)
    _, denied = run_action(
        request,
        lambda: ending.pass_shares_set(actor=request.user, sold_pass=sold, patients=patients),
        success=f"{sold.name} is shared with {names}."
        if patients
        else f"{sold.name} is not shared.",
    )
    return denied or _to_detail(pk)


# ---- refund (two steps) -------------------------------------------------------------------------


def _credit_payments(sold: Pass, credited: int | None) -> list[dict]:
    """Step two: the payments that paid this pass and now hold unapplied credit, each with the
    amount to refund suggested (what step one credited, newest payment first)."""
    invoices = [i.pk for i in pass_invoices(sold)]
    payments = [
        p
        for p in Payment.objects.filter(allocations__invoice_id__in=invoices)
        .distinct()
        .order_by("-received_at", "-pk")
        if p.unapplied_minor > 0
    ]
    left = credited if credited is not None else None
    out = []
    for payment in payments:
        amount = payment.unapplied_minor if left is None else min(left, payment.unapplied_minor)
        if left is not None:
            left -= amount
        out.append(
            {
                "payment": payment,
                "form": PaymentRefundForm(
                    currency=clinic_get().currency,
                    initial={"amount": amount, "reason": f"Refund of {sold.name}"},
                ),
            }
        )
    return out


@staff_required(Action.REFUND)
def pass_refund(request, pk: int):
    sold, clinic = _pass(pk), clinic_get()
    if sold.status == Pass.Status.REFUNDED:  # step two
        try:
            credited = int(request.GET.get("credited", ""))
        except ValueError:
            credited = None
        return render(
            request,
            "passes/pass_refund.html",
            {
                "sold": sold,
                "clinic": clinic,
                "step": 2,
                "credited": credited,
                "payments": _credit_payments(sold, credited),
                "refund_key": new_form_key(),
            },
        )
    suggestions = ending.refund_suggestions(sold)
    form = RefundStepOneForm(
        request.POST or None,
        currency=clinic.currency,
        initial={"form_key": new_form_key(), "amount": suggestions["suggested"]},
    )
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        outcome, result = save_once(
            request,
            form,
            lambda: ending.pass_refund(
                actor=request.user,
                sold_pass=sold,
                amount_minor=d["amount"],
                detach_future=d["detach_future"],
                reason=d["reason"],
            ),
        )
        if outcome == "denied":
            return result
        if outcome == "ok":
            messages.success(
                request,
                f"{sold.name} refunded: {clinic.money(d['amount'])} is now "
                f"{sold.patient.full_name}'s credit. Step two: refund the payment below.",
            )
            return redirect(f"{reverse('passes:refund', kwargs={'pk': pk})}?credited={d['amount']}")
        if outcome == "repeat":
            return redirect("passes:refund", pk=pk)
    return render(
        request,
        "passes/pass_refund.html",
        {
            "sold": sold,
            "clinic": clinic,
            "step": 1,
            "form": form,
            "s": suggestions,
            "small_balance": small_balance_offer(sold, suggestions["suggested"]),
            "collected": pass_collected_minor(sold),
            "future": list(_future_reservations(sold)),
            "active": sold.status == Pass.Status.ACTIVE,
        },
    )


# ---- transfer -----------------------------------------------------------------------------------


@staff_required(Action.PASS_TRANSFER)
def pass_transfer(request, pk: int):
    sold = _pass(pk)
    q = request.GET.get("q", "").strip()
    others = Patient.objects.exclude(pk=sold.patient_id)
    form = TransferForm(request.POST or None, choices=others, initial={"form_key": new_form_key()})
    if request.method == "POST" and form.is_valid():
        target = form.cleaned_data["to_patient"]
        outcome, result = save_once(
            request,
            form,
            lambda: ending.pass_transfer(actor=request.user, sold_pass=sold, to_patient=target),
        )
        if outcome == "denied":
            return result
        if outcome == "ok":
            what = (
                f"{clinic_get().money(result.face_value_minor)} of value"
                if result.face_value_minor is not None
                else f"{result.quantity} remaining uses"
            )
            messages.success(request, f"{what} of {sold.name} transferred to {target.full_name}.")
            return _to_detail(result.pk)
        if outcome == "repeat":
            return _to_detail(pk)
    found = (
        [p for p in patient_search(query=q, limit=21) if p.pk != sold.patient_id][:20] if q else []
    )
    return render(
        request,
        "passes/pass_transfer.html",
        {"sold": sold, "form": form, "q": q, "found": found, "clinic": clinic_get()},
    )
