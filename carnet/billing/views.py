"""The patient's Billing tab: purchases, payments, credit, cards on file, and their actions."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError, NotAllowed
from carnet.core.idempotency import claim_form_key, new_form_key
from carnet.core.pages import apply_errors, not_allowed, run_action, save_once, staff_required
from carnet.core.permissions import Action
from carnet.gateway.selectors import cards_for_patient
from carnet.gateway.services import (
    AuthenticationPending,
    PaymentFailed,
    card_authenticate_page,
    card_entry_begin,
    card_file_stored,
    card_keep_at_gateway,
    card_label,
    card_remove,
    card_setup_begin,
    card_setup_complete,
    card_store,
    card_tokenize,
    gateway_uses_stripe_js,
    stripe_csp,
    stripe_js_url,
)
from carnet.people.selectors import patient_get

from . import card_attempts, payments
from .card_attempts import RECONCILE_AFTER, attempts_to_review
from .forms import NEW_CARD, CardForm, CardHolderForm, PaymentForm, RefundForm
from .invoicing import invoice_delete
from .models import Allocation, CardAttempt, Invoice, Payment
from .selectors import amount_owing, credit_balance, open_invoices
from .webhooks import disputes_to_review

TAB_PAGE = 50  # invoices or payments per page of the Billing tab


def _tab(pk: int):
    return redirect("billing:tab", pk=pk)


@staff_required(Action.INVOICE_VIEW)
def billing_tab(request, pk: int):
    patient = patient_get(pk)
    invoices = (
        Invoice.objects.filter(patient=patient)
        .prefetch_related("lines", "allocations__payment")
        .order_by("-number")
    )
    payments_qs = (
        Payment.objects.filter(patient=patient)
        .prefetch_related("allocations__invoice", "refunds", "disputes")
        .order_by("-received_at", "-id")
    )
    # The newest first, a page at a time: a long-time patient's tab stays quick to open.
    invoice_page = Paginator(invoices, TAB_PAGE).get_page(request.GET.get("invoices"))
    payment_page = Paginator(payments_qs, TAB_PAGE).get_page(request.GET.get("payments"))
    return render(
        request,
        "billing/tab.html",
        {
            "patient": patient,
            "clinic": clinic_get(),
            "invoices": invoice_page,
            "payments": payment_page,
            "invoice_page": invoice_page,
            "payment_page": payment_page,
            "cards": cards_for_patient(patient),
            "owing": amount_owing(patient),
            "credit": credit_balance(patient),
            "refund_form": RefundForm(currency=clinic_get().currency),
            "refund_key": new_form_key(),
        },
    )


def staff_card_entry_for(request) -> str:
    """The tag of the SetupIntent behind a staff page's "New card" field with Stripe on (only this
    staff member's card pages may use it), or "" with the test gateway, whose form is
    server-side."""
    return f"staff-checkout:{request.user.pk}" if gateway_uses_stripe_js() else ""


def new_card_entered(form, patient):
    """A staff form's new card goes into the gateway's card form first, outside any transaction: a
    bad number records nothing. The card entered, None without one, or False (errors on the
    form). One kept on file is attached at the gateway now (Stripe: to the patient's customer)."""
    try:
        entered = card_tokenize(**form.card_entry()) if form.card_entry() else None
        if entered and form.keeps_new_card():
            card_keep_at_gateway(patient=patient, stored=entered)
    except CarnetError as exc:
        apply_errors(form, exc)
        return False
    return entered


def card_entry_render(request, template: str, context: dict, *, form, entry_for: str):
    """A staff page with a "New card" field: with Stripe on, a fresh SetupIntent for Stripe.js's
    field each time the form is shown, and a CSP admitting exactly Stripe's origins."""
    stripe = {}
    if entry_for:
        try:  # kept on file if the desk asks (a membership's card, "Keep this card on file")
            stripe = card_entry_begin(entry_for=entry_for, keep=True)
        except CarnetError as exc:
            form.add_error(None, exc.message)
    response = render(
        request, template, {**context, "form": form, "stripe": stripe, "stripe_on": bool(entry_for)}
    )
    if entry_for:
        response["Content-Security-Policy"] = stripe_csp()
    return response


def _new_card_payment(request, form, patient, entered):
    """Receive payment by a new card: kept on file first if the desk ticked it (once per form key,
    even if the form is posted twice), then charged as a card attempt keyed by the form. The
    payment, or AuthenticationPending (with its attempt) when the bank asks its holder to
    confirm."""
    data, kept = form.cleaned_data, None
    if data["keep_card"]:
        with transaction.atomic():
            if claim_form_key(user=request.user, key=f"keep-card:{data['form_key']}"):
                kept = card_file_stored(
                    actor=request.user, patient=patient, stored=entered, holder=data["holder"]
                )
    try:
        return payments.payment_receive(
            actor=request.user,
            patient=patient,
            method=Payment.Method.CARD_GATEWAY,
            amount_minor=data["amount"],
            reference=data["reference"],
            allocations=form.allocations(),
            card=kept,
            token=entered.token,
            card_label=card_label(entered),
            idempotency_key=f"form-{data['form_key']}",
        )
    except AuthenticationPending as exc:
        return exc


@staff_required(Action.PAYMENT_TAKE)
def payment_new(request, pk: int):
    patient, clinic = patient_get(pk), clinic_get()
    invoices = open_invoices(patient)
    initial = {"form_key": new_form_key()}
    chosen = request.GET.get("invoice")
    for invoice in invoices:
        if chosen in (None, "", str(invoice.pk)):
            initial[f"apply_{invoice.pk}"] = invoice.balance_minor
    if chosen:
        initial["amount"] = sum(inv.balance_minor for inv in invoices if str(inv.pk) == chosen)
    entry_for = staff_card_entry_for(request)
    form = PaymentForm(
        request.POST or None,
        patient=patient,
        currency=clinic.currency,
        invoices=invoices,
        initial=initial,
        stripe_entry_for=entry_for,
    )
    valid = request.method == "POST" and form.is_valid()
    entered = new_card_entered(form, patient) if valid else None
    if valid and entered is not False:
        data = form.cleaned_data

        def write():
            if entered is not None:
                return _new_card_payment(request, form, patient, entered)
            # "Redeem gift card": the card's balance moves too (giftcards registers its receiver)
            receive = payments.payment_receiver(data["method"])
            if receive is not None:
                return receive(
                    actor=request.user,
                    code=data["gift_card_code"],
                    patient=patient,
                    amount_minor=data["amount"],
                    allocations=form.allocations(),
                    reference=data["reference"],
                )
            return payments.payment_receive(
                actor=request.user,
                patient=patient,
                method=data["method"],
                amount_minor=data["amount"],
                reference=data["reference"],
                allocations=form.allocations(),
                card=data["card"],
                idempotency_key=f"form-{data['form_key']}",
            )

        outcome, result = save_once(
            request,
            form,
            write,
            calls_gateway=data["method"] in (Payment.Method.CARD_GATEWAY, NEW_CARD),
        )
        if outcome == "denied":
            return result
        if isinstance(result, AuthenticationPending):  # the bank's check, then card_authenticated
            action = reverse("billing:card_authenticated", args=[result.attempt.pk])
            return card_authenticate_page(request, result, staff=True, action=action)
        if outcome in ("ok", "repeat"):
            if outcome == "ok":
                left = result.unapplied_minor
                messages.success(
                    request,
                    f"Received {clinic.money(result.amount_minor)} by "
                    f"{result.get_method_display()}."
                    + (f" {clinic.money(left)} added to the patient's credit." if left else ""),
                )
            return _tab(pk)
    return card_entry_render(
        request,
        "billing/payment_form.html",
        {"patient": patient, "credit": credit_balance(patient), "clinic": clinic},
        form=form,
        entry_for=entry_for,
    )


@require_POST
@staff_required(Action.PAYMENT_TAKE)
def credit_apply_view(request, pk: int, invoice_pk: int):
    patient = patient_get(pk)
    invoice = get_object_or_404(Invoice, pk=invoice_pk, patient=patient)
    _, denied = run_action(
        request,
        lambda: payments.credit_apply(actor=request.user, patient=patient, invoice=invoice),
        success=f"Credit applied to {invoice}.",
        once=True,
    )
    return denied or _tab(pk)


@require_POST
@staff_required(Action.PAYMENT_UNAPPLY)
def unapply_view(request, pk: int, allocation_pk: int):
    allocation = get_object_or_404(Allocation, pk=allocation_pk, payment__patient_id=pk)
    _, denied = run_action(
        request,
        lambda: payments.allocation_unapply(actor=request.user, allocation=allocation),
        success="Payment unapplied; the amount is now the patient's credit.",
        once=True,
    )
    return denied or _tab(pk)


@require_POST
@staff_required(Action.REFUND)
def refund_view(request, pk: int, payment_pk: int):
    payment = get_object_or_404(Payment, pk=payment_pk, patient_id=pk)
    clinic = clinic_get()
    form = RefundForm(request.POST, currency=clinic.currency)
    if not form.is_valid():
        messages.error(request, "Enter the amount to refund, like 25.00.")
        return _tab(pk)
    data = form.cleaned_data
    key = f"{data['form_key']}:refund:{payment.pk}" if data.get("form_key") else ""

    def refund():
        do = lambda: payments.payment_refund(  # noqa: E731
            actor=request.user,
            payment=payment,
            amount_minor=data["amount"],
            method=data["method"] or None,
            reason=data["reason"],
            idempotency_key=f"refund-form-{request.user.pk}-{key}" if key else None,
        )
        if (data["method"] or payment.method) == Payment.Method.CARD_GATEWAY:
            return (
                do()
            )  # a card refund attempt keyed by the form: a repeat finds it, outside any transaction
        with (
            transaction.atomic()
        ):  # the key is claimed with the refund: a rolled-back attempt frees it
            if not claim_form_key(user=request.user, key=key):
                return "repeat"
            return do()

    done, denied = run_action(request, refund)
    if done == "repeat":
        messages.info(request, "That refund was already made; nothing was refunded twice.")
    elif done is not None:
        messages.success(request, f"Refunded {clinic.money(data['amount'])}.")
    return denied or _tab(pk)


@require_POST
@staff_required(Action.INVOICE_DELETE)
def invoice_delete_view(request, pk: int, invoice_pk: int):
    invoice = get_object_or_404(Invoice, pk=invoice_pk, patient_id=pk)
    _, denied = run_action(
        request,
        lambda: invoice_delete(actor=request.user, invoice=invoice),
        success=f"{invoice} deleted.",
    )
    return denied or _tab(pk)


@staff_required(Action.PAYMENT_TAKE)
def card_new(request, pk: int):
    patient = patient_get(pk)
    stripe_on = gateway_uses_stripe_js()
    form = (CardHolderForm if stripe_on else CardForm)(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            if stripe_on:  # Stripe.js saved the card in the SetupIntent; Carnet gets its id only
                card = card_setup_complete(
                    actor=request.user,
                    patient=patient,
                    holder=form.cleaned_data["holder"],
                    setup_intent=request.POST.get("setup_intent", "")[:255],
                )
            else:
                card = card_store(actor=request.user, patient=patient, **form.cleaned_data)
        except NotAllowed as exc:
            return not_allowed(request, exc.message)
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"{card.brand_label} •••• {card.last4} saved.")
            return _tab(pk)
    stripe = {}
    if stripe_on:
        try:  # a fresh SetupIntent for the patient's Stripe customer each time the form is shown
            stripe = {
                **card_setup_begin(actor=request.user, patient=patient),
                "js_url": stripe_js_url(),
            }
        except NotAllowed as exc:
            return not_allowed(request, exc.message)
        except CarnetError as exc:
            form.add_error(None, exc.message)
    response = render(
        request, "billing/card_form.html", {"patient": patient, "form": form, "stripe": stripe}
    )
    if stripe_on:
        response["Content-Security-Policy"] = stripe_csp()
    return response


@require_POST
@staff_required(Action.PAYMENT_TAKE)
def card_remove_view(request, pk: int, card_pk: int):
    card = get_object_or_404(cards_for_patient(patient_get(pk)), pk=card_pk)
    _, denied = run_action(
        request, lambda: card_remove(actor=request.user, card=card), success="Card removed."
    )
    return denied or _tab(pk)


@require_POST
@staff_required(Action.PAYMENT_TAKE)
def card_authenticated(request, attempt_pk: int):
    """Back from the bank's 3-D Secure check of a card charge staff started (the checkout's new
    card): what the charge became, read from Stripe by the PaymentIntent id Carnet stored on the
    attempt (the id the page posts must be that one), recorded once whoever (webhook,
    reconciliation) came first."""

    attempt = get_object_or_404(
        CardAttempt.objects.select_related("patient"),
        pk=attempt_pk,
        kind=CardAttempt.Kind.CHARGE,
        created_by__isnull=False,
    )
    clinic = clinic_get()
    if (
        not (attempt.gateway_id and attempt.context.get("authenticating"))
        or request.POST.get("payment_intent", "") != attempt.gateway_id
    ):
        messages.error(
            request,
            "This confirmation is for another payment; nothing was recorded. Check the "
            "patient's Billing tab.",
        )
        return _tab(attempt.patient_id)
    try:
        attempt = card_attempts.charge_run(attempt)
    except AuthenticationPending as exc:
        return card_authenticate_page(request, exc, staff=True, action=request.path)
    except PaymentFailed as exc:
        messages.warning(
            request,
            f"The card payment of {clinic.money(attempt.amount_minor)} did not go through: "
            f"{exc.message} It is still owing; take another payment.",
        )
    except CarnetError as exc:
        messages.warning(
            request,
            f"The card payment of {clinic.money(attempt.amount_minor)} is not confirmed yet: "
            f"{exc.message}",
        )
    else:
        messages.success(request, f"Received {clinic.money(attempt.amount_minor)} by card.")
    return _tab(attempt.patient_id)


@staff_required(Action.CARD_REVIEW)
def card_attempts_review(request):
    """Card payments to review: attempts still without an answer,
    and what reconciliation recorded."""

    return render(
        request,
        "billing/card_review.html",
        {
            "attempts": attempts_to_review()[:300],
            "disputes": disputes_to_review()[:300],
            "clinic": clinic_get(),
            "minutes": int(RECONCILE_AFTER.total_seconds() // 60),
        },
    )
