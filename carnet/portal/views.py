"""The patient portal ("My Account"): a patient sees their own record and their dependants'."""

import time
from functools import wraps
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from carnet.billing import documents, emails
from carnet.billing.document_views import pdf_response
from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import balance_pay_online, pay_balance_entry_for
from carnet.billing.selectors import amount_owing, open_invoices
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import clock
from carnet.core.errors import CarnetError, NotFound
from carnet.core.idempotency import new_form_key
from carnet.core.pages import apply_errors
from carnet.gateway.services import (
    AuthenticationPending,
    PaymentFailed,
    card_authenticate_page,
    card_entry_begin,
    gateway_uses_stripe_js,
    stripe_csp,
)
from carnet.giftcards.services import gift_card_sell_online
from carnet.passes import online as passes_online
from carnet.passes.memberships import card_requests
from carnet.passes.memberships import online as memberships_online
from carnet.passes.memberships.services import freeze_fee_words
from carnet.passes.memberships.services import membership_cancel as cancel
from carnet.passes.memberships.services import membership_pause as pause
from carnet.passes.memberships.services import membership_resume as resume
from carnet.passes.memberships.views import membership_summary
from carnet.passes.packages import online as packages_online
from carnet.passes.redeeming.quotes import price_with_tax_minor
from carnet.passes.selectors import pass_fully_paid, pass_next_instalment, pass_unlocked
from carnet.passes.setup.expiry_rules import expiry_terms
from carnet.people import invitations, signups
from carnet.people.selectors import patient_family, patients_managed_by
from carnet.scheduling import online
from carnet.staff import account_views, session_views, two_factor_views
from carnet.staff.forms import SetPasswordForm
from carnet.staff.middleware import LOGGED_IN_AT
from carnet.staff.views import login_view

from .forms import CARD_FIELDS, GiftCardBuyForm, PayBalanceForm, StripeCardForm


def patient_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        patient = getattr(request.user, "patient", None) if request.user.is_authenticated else None
        if patient is None:
            return redirect(f"{reverse('portal:login')}?next={request.get_full_path()}")
        return view(request, patient, *args, **kwargs)

    return wrapper


def portal_login(request):
    return login_view(request, kind="patient", template="portal/login.html", home="portal:home")


def password_reset(request):
    return account_views.password_reset(request, kind="patient")


def password_reset_confirm(request, token: str):
    return account_views.password_reset_confirm(request, token, kind="patient")


def invitation(request, token: str):
    """The link in a portal invitation: the patient chooses their password
    (their email is the login)."""
    try:
        patient = invitations.invitation_patient(token=token)
    except CarnetError as exc:
        return render(
            request,
            "staff/link_invalid.html",
            {
                "kind": "patient",
                "invitation": True,
                "login_url": "portal:login",
                "message": exc.message,
            },
            status=exc.status,
        )
    form = SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invitations.portal_invitation_accept(
                token=token,
                password=form.cleaned_data["password"],
                confirm=form.cleaned_data["confirm"],
            )
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            messages.success(
                request, f"Your password is set. Log in with {patient.email} and your new password."
            )
            return redirect("portal:login")
    return render(
        request,
        "portal/invitation.html",
        {"form": form, "patient": patient, "clinic": clinic_get()},
    )


def sign_up_confirm(request, token: str):
    """The link in an online sign-up's email: the person chooses their password, which creates their
    patient record and login, and is logged in and sent back to the booking they were confirming."""
    try:
        details = signups.sign_up_details(token=token)
    except CarnetError as exc:
        return render(
            request,
            "staff/link_invalid.html",
            {
                "kind": "patient",
                "sign_up": True,
                "login_url": "portal:login",
                "message": exc.message,
            },
            status=exc.status,
        )
    form = SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            patient = signups.sign_up_complete(
                token=token,
                password=form.cleaned_data["password"],
                confirm=form.cleaned_data["confirm"],
            )
        except CarnetError as exc:
            if (
                exc.code == "login_taken"
            ):  # the link was used already: the address is theirs, so say so
                messages.info(request, exc.message)
                return redirect("portal:login")
            apply_errors(form, exc)
        else:
            login(request, patient.user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[LOGGED_IN_AT] = time.time()
            if details.get("next"):
                messages.success(request, "Your account is ready. Confirm your booking below.")
                return redirect(details["next"])
            messages.success(request, "Your account is ready.")
            return redirect("portal:home")
    return render(
        request,
        "portal/sign_up_confirm.html",
        {"form": form, "details": details, "clinic": clinic_get()},
    )


def two_factor_verify(request):
    return two_factor_views.verify_page(request, door="portal")


@patient_required
def two_factor(request, patient):
    """Optional for patients: an authenticator app and recovery codes, like staff."""
    return two_factor_views.settings_page(
        request,
        door="portal",
        context={"patient": patient, "clinic": clinic_get(), "tab": "account"},
    )


@patient_required
def sessions(request, patient):
    return session_views.sessions_page(
        request,
        door="portal",
        context={"patient": patient, "clinic": clinic_get(), "tab": "account"},
    )


@patient_required
def password_change(request, patient):
    return account_views.password_change_page(
        request,
        kind="patient",
        user=request.user,
        context={"patient": patient, "clinic": clinic_get(), "tab": "account"},
    )


@patient_required
def home(request, patient):
    upcoming, past = online.patient_appointments(patient=patient)
    now = clock.now()
    return render(
        request,
        "portal/home.html",
        {
            "upcoming": [
                (
                    visit,
                    visit.status == "booked" and now <= online.cancel_deadline(visit.appointment),
                )
                for visit in upcoming
            ],
            "past": past,
            "patient": patient,
            "clinic": clinic_get(),
            "family": patient_family(patient),
            "dependants": patients_managed_by(patient)[1:],
            "invoices": Invoice.objects.filter(
                patient__in=patients_managed_by(patient), deleted_at__isnull=True
            )
            .select_related("patient")
            .order_by("-invoice_date", "-number")[:50],
            "owing": clinic_get().money(amount_owing(patient)),
            "pay_token": emails.pay_link_token(patient),
        },
    )


@require_POST
@patient_required
def appointment_cancel(request, patient, pk: int):
    """Cancel an own (or a dependant's) appointment, refused inside the clinic's
    cancellation window."""
    try:
        appointment = online.appointment_cancel_by_patient(user=request.user, visit_pk=pk)
    except NotFound:
        raise  # someone else's appointment: a plain 404
    except CarnetError as exc:
        messages.error(request, exc.message)
    else:
        when = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone))
        messages.success(
            request, f"Cancelled: {appointment.treatment} on {when:%A %-d %B at %H:%M}."
        )
    return redirect("portal:home")


@patient_required
def receipt_pdf(request, patient, pk: int):
    """A receipt of the patient's own, or a dependant's; any other invoice is "not found"."""
    invoice = Invoice.objects.filter(
        pk=pk, patient__in=patients_managed_by(patient), deleted_at__isnull=True
    ).first()
    if invoice is None:
        raise NotFound(f"No receipt with id {pk}.")
    return pdf_response(documents.receipt_pdf(invoice), documents.receipt_filename(invoice))


@patient_required
def gift_card_buy(request, patient):
    """Buy a gift card by card (SPEC 7) when the clinic sells them online;
    the code goes to the recipient."""

    clinic = clinic_get()
    on = clinic.gift_cards_enabled and clinic.gift_card_online_sales_enabled
    stripe_on = on and gateway_uses_stripe_js()
    entry_for = passes_online.portal_entry_for(request.user) if stripe_on else ""
    form = GiftCardBuyForm(
        request.POST or None,
        currency=clinic.currency,
        initial={"form_key": new_form_key()},
        stripe=stripe_on,
    )
    if on and request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        card_entry = (
            {"setup_intent": request.POST.get("setup_intent", "")[:255], "entry_for": entry_for}
            if stripe_on
            else {
                "card_number": data["number"],
                "exp_month": data["exp_month"],
                "exp_year": data["exp_year"],
                "cvc": data["cvc"],
            }
        )
        try:
            gift_card = gift_card_sell_online(
                patient=patient,
                amount_minor=data["amount"] or 0,
                recipient_name=data["recipient_name"],
                recipient_email=data["recipient_email"],
                holder=data["holder"],
                idempotency_key=data["form_key"],
                **card_entry,
            )
        except AuthenticationPending as exc:
            return card_authenticate_page(request, exc, nav="portal/_nav.html")
        except PaymentFailed as exc:
            form.add_error(None, _declined_sentence(exc))
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            return render(
                request,
                "portal/gift_card_bought.html",
                {
                    "clinic": clinic,
                    "patient": patient,
                    "gift_card": gift_card,
                    "amount": clinic.money(gift_card.balance_minor),
                },
            )
    return _with_stripe_js(
        request,
        form,
        entry_for,
        "portal/gift_card_buy.html",
        {
            "clinic": clinic,
            "patient": patient,
            "form": form,
            "on": on,
            "minimum": clinic.money(clinic.gift_card_online_minimum_minor),
        },
    )


# ---------------------------------------------------------------- Pay Balance link (public, signed)


def _link_patient(request, token: str):
    """(patient, None), or (None, the page explaining why the link does not work)."""
    try:
        return emails.pay_link_patient(token), None
    except (emails.PayLinkInvalid, emails.PayLinkExpired) as exc:
        return None, render(
            request,
            "portal/pay_link_invalid.html",
            {"clinic": clinic_get(), "message": exc.message, "expired": exc.status == 410},
            status=exc.status,
        )


def _declined_sentence(exc: PaymentFailed) -> str:
    return exc.for_patient  # the reason in the patient's words, then what they can do here


def _card_form(request):
    """(the card form of a page reached by a signed link, whether Stripe.js takes the card)."""
    stripe_on = gateway_uses_stripe_js()
    return (StripeCardForm if stripe_on else PayBalanceForm)(
        request.POST or None, initial={"form_key": new_form_key()}
    ), stripe_on


def _card_entry(request, data: dict, stripe_on: bool) -> dict:
    """The card as the services take it: Stripe.js's SetupIntent, or the test gateway's fields."""
    if stripe_on:
        return {"setup_intent": request.POST.get("setup_intent", "")[:255]}
    return {
        "card_number": data["number"],
        "exp_month": data["exp_month"],
        "exp_year": data["exp_year"],
        "cvc": data["cvc"],
    }


def _card_submit(request, form, stripe_on: bool, pay, passes=()):
    """`pay(holder=…, idempotency_key=…, <the card>)` for a valid POSTed card form: its result, or
    None with the decline or refusal on the form (AuthenticationPending and errors of the `passes`
    types are raised instead)."""
    if request.method != "POST" or not form.is_valid():
        return None
    data = form.cleaned_data
    try:
        return pay(
            holder=data["holder"],
            idempotency_key=data["form_key"],
            **_card_entry(request, data, stripe_on),
        )
    except AuthenticationPending:  # 3-D Secure: the caller shows the bank's check
        raise
    except PaymentFailed as exc:
        form.add_error(None, _declined_sentence(exc))
    except CarnetError as exc:
        if passes and isinstance(exc, passes):
            raise
        apply_errors(form, exc)
    return None


def pay_balance(request, token: str):
    patient, invalid = _link_patient(request, token)
    if invalid:
        return invalid
    form, stripe_on = _card_form(request)
    try:
        payment = _card_submit(
            request,
            form,
            stripe_on,
            lambda **card_entry: balance_pay_online(patient=patient, **card_entry),
        )
    except AuthenticationPending as exc:
        return card_authenticate_page(request, exc, nav="portal/_public_nav.html")
    if payment is not None:
        return redirect("portal:pay_balance_paid", token=token, payment_pk=payment.pk)
    clinic = clinic_get()
    invoices = list(open_invoices(patient))
    return _with_stripe_js(
        request,
        form,
        pay_balance_entry_for(patient) if stripe_on and invoices else "",
        "portal/pay_balance.html",
        {
            "clinic": clinic,
            "patient": patient,
            "form": form,
            "invoices": [
                (documents.invoice_number(i, clinic), i, clinic.money(i.balance_minor))
                for i in invoices
            ],
            "owing": clinic.money(sum(i.balance_minor for i in invoices)),
        },
    )


def pay_balance_paid(request, token: str, payment_pk: int):
    patient, invalid = _link_patient(request, token)
    if invalid:
        return invalid
    payment = Payment.objects.filter(pk=payment_pk, patient=patient).first()
    if payment is None:
        raise NotFound("No such payment.")
    clinic = clinic_get()
    paid = Invoice.objects.filter(
        allocations__payment=payment, allocations__unapplied_at__isnull=True
    ).distinct()
    return render(
        request,
        "portal/pay_balance_paid.html",
        {
            "clinic": clinic,
            "patient": patient,
            "payment": payment,
            "amount": clinic.money(payment.amount_minor),
            "numbers": [documents.invoice_number(i, clinic) for i in paid.order_by("number")],
        },
    )


# ------------------------------------------------------------ Packages & Memberships (SPEC 9.1, 11)


class PassBuyForm(PayBalanceForm):
    """Buy a package online: for whom (when the buyer has dependants), then the card details."""

    def __init__(self, *args, patients, free: bool, stripe: bool = False, **kwargs):

        super().__init__(*args, **kwargs)
        if len(patients) > 1:
            self.fields["patient"] = forms.TypedChoiceField(
                label="For", coerce=int, choices=[(p.pk, p.full_name) for p in patients]
            )
            self.order_fields(["form_key", "patient"])
        if free:  # nothing to charge: no card asked for
            for name in ("holder", "number", "exp_month", "exp_year", "cvc"):
                del self.fields[name]
        elif stripe:  # the card goes into Stripe's own field (Stripe.js), never into this form
            for name in CARD_FIELDS:
                del self.fields[name]


def _pass_status(sold, clinic) -> str:
    """The package's state as the patient should read it; a payment plan says what its payments have
    unlocked and what is due next, as staff see it ("Partly paid (2 unlocked)")."""

    if sold.status != sold.Status.ACTIVE:
        return sold.get_status_display()
    if sold.expires_on and sold.expires_on < clinic_today(clinic):
        return "Expired"
    if not pass_fully_paid(sold):
        unlocked = pass_unlocked(sold)
        row = pass_next_instalment(sold)
        due = (
            f"next instalment {clinic.money(row.amount_minor)} on {row.due_on:%-d %b %Y}"
            if row
            else ""
        )
        if unlocked == 0:
            return f"Awaiting payment{f' ({due})' if due else ''}"
        if sold.remaining == 0:
            return "Used up"
        return f"{unlocked} of {sold.quantity} sessions unlocked{f', {due}' if due else ''}"
    if sold.remaining == 0:
        return "Used up"
    return "Active"


@patient_required
def passes(request, patient):
    """The Packages & Memberships tab: own and dependants' passes with their usage,
    and what is sold online."""

    clinic = clinic_get()
    return render(
        request,
        "portal/passes.html",
        {
            "clinic": clinic,
            "patient": patient,
            "tab": "passes",
            "dependants": patients_managed_by(patient)[1:],
            "passes": [
                (p, _pass_status(p, clinic))
                for p in passes_online.portal_passes(request.user).prefetch_related(
                    "items__treatment", "pass_invoices__invoice"
                )
                if p.kind != p.Kind.MEMBERSHIP
            ],
            "memberships": _memberships(request.user, clinic),
            "offers": [
                (t, packages_online.online_price_minor(t), packages_online.online_total_minor(t))
                for t in packages_online.online_templates().prefetch_related(
                    "items__treatment", "taxes"
                )
            ],
            "membership_offers": [
                (t, packages_online.online_total_minor(t))
                for t in memberships_online.online_membership_templates().prefetch_related(
                    "items__treatment", "taxes"
                )
            ],
            "online": clinic.online_sales_enabled,
            "offer_terms": expiry_terms(
                clinic
            ).disclosure,  # what a package bought now is sold with
        },
    )


@patient_required
def pass_buy(request, patient, pk: int):
    """Buy one package sold online, paid by card now (a free one without a card)."""

    clinic = clinic_get()
    template = packages_online.online_template_get(pk)
    price = packages_online.online_price_minor(template)
    family = patients_managed_by(patient)
    stripe_on = gateway_uses_stripe_js() and price > 0
    form = PassBuyForm(
        request.POST or None,
        patients=family,
        free=price == 0,
        stripe=stripe_on,
        initial={"form_key": new_form_key(), "patient": patient.pk},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        owner = next((p for p in family if p.pk == data.get("patient", patient.pk)), None)
        try:
            sold = packages_online.package_buy_online(
                user=request.user,
                patient=owner,
                template=template,
                card_number=data.get("number", ""),
                exp_month=data.get("exp_month") or 0,
                exp_year=data.get("exp_year") or 0,
                cvc=data.get("cvc", ""),
                holder=data.get("holder", ""),
                idempotency_key=data["form_key"],
                setup_intent=request.POST.get("setup_intent", "")[:255] if stripe_on else "",
            )
        except AuthenticationPending as exc:
            return card_authenticate_page(request, exc, nav="portal/_nav.html")
        except PaymentFailed as exc:
            form.add_error(None, _declined_sentence(exc))
        except NotFound:
            raise
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            return redirect("portal:pass_bought", pk=sold.pk)
    return _with_stripe_js(
        request,
        form,
        passes_online.portal_entry_for(request.user) if stripe_on else "",
        "portal/pass_buy.html",
        {
            "clinic": clinic,
            "patient": patient,
            "tab": "passes",
            "template": template,
            "form": form,
            "price": clinic.money(price),
            "full_price": clinic.money(template.price_minor),
            "total": clinic.money(packages_online.online_total_minor(template)),
        },
    )


def _with_stripe_js(
    request, form, entry_for: str, template_name: str, context: dict, keep: bool = False
):
    """Render a page that takes a card: with Stripe on (`entry_for` given), a fresh SetupIntent for
    Stripe.js to put the card in (`keep`: the card stays on file), and the CSP that admits Stripe's
    origins on this page only."""
    stripe = {}
    if entry_for:
        try:
            stripe = card_entry_begin(entry_for=entry_for, keep=keep)
        except CarnetError as exc:
            form.add_error(None, exc.message)
    response = render(
        request, template_name, {**context, "stripe": stripe, "stripe_on": bool(entry_for)}
    )
    if entry_for:
        response["Content-Security-Policy"] = stripe_csp()
    return response


@patient_required
def pass_bought(request, patient, pk: int):

    clinic = clinic_get()
    sold = passes_online.portal_pass_get(request.user, pk)
    return render(
        request,
        "portal/pass_bought.html",
        {
            "clinic": clinic,
            "patient": patient,
            "tab": "passes",
            "sold": sold,
            "price": clinic.money(sold.price_minor),
        },
    )


# ---------------------------------------------------------------- memberships (SPEC 6, 9.7, 11)


def _membership_status(sold, summary) -> str:
    if sold.status != sold.Status.ACTIVE:
        return sold.get_status_display()
    if summary["uses"]["state"] == "paused" or sold.pauses.filter(resumed_at__isnull=True).exists():
        return "Paused"
    if sold.ends_after:
        return f"Cancelled, covers visits until {sold.ends_after:%Y-%m-%d}"
    if summary["owing_minor"] > 0:
        return "Awaiting payment"
    if summary["uses"]["state"] == "not_started":
        return f"Starts {sold.start_date:%Y-%m-%d}"
    return "Active"


def _memberships(user, clinic) -> list[dict]:
    """Each membership of the portal user and their dependants,
    with what the tab shows and may offer."""

    today = clinic_today(clinic)
    out = []
    for sold in (
        passes_online.portal_passes(user)
        .filter(kind="membership")
        .prefetch_related("pass_invoices__invoice", "items__treatment", "taxes")
    ):
        summary = membership_summary(sold, today)
        paused = sold.pauses.filter(resumed_at__isnull=True).exists()
        active = sold.status == sold.Status.ACTIVE
        out.append(
            {
                "sold": sold,
                "uses": summary["uses"],
                "next_billing": summary["next_billing"],
                "billing": summary["billing"],
                "next_amount": clinic.money(price_with_tax_minor(sold)),
                "status": _membership_status(sold, summary),
                "can_cancel": active and sold.self_cancel and not sold.ends_after,
                "can_pause": active and sold.pause_allowed and not paused and not sold.ends_after,
                "can_resume": active and paused,
                "pause_choices": range(1, max(sold.pause_max_cycles, 1) + 1),
                "freeze_fee": freeze_fee_words(sold),
            }
        )
    return out


class MembershipSignUpForm(PassBuyForm):
    """Sign up for a membership online: for whom, then the card kept on file and
    charged each cycle."""

    def __init__(self, *args, patients, stripe: bool = False, **kwargs):
        super().__init__(*args, patients=patients, free=False, stripe=stripe, **kwargs)


@patient_required
def membership_sign_up(request, patient, pk: int):
    """Sign up online for a membership the clinic offers online: the card is kept on file, the first
    cycle charged now and each next cycle when it starts."""

    clinic = clinic_get()
    template = memberships_online.online_membership_template_get(pk)
    family = patients_managed_by(patient)
    stripe_on = gateway_uses_stripe_js()
    form = MembershipSignUpForm(
        request.POST or None,
        patients=family,
        stripe=stripe_on,
        initial={"form_key": new_form_key(), "patient": patient.pk},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        owner = next((p for p in family if p.pk == data.get("patient", patient.pk)), None)
        card_entry = _card_entry(request, data, stripe_on)
        try:
            sold = memberships_online.membership_sign_up_online(
                user=request.user,
                patient=owner,
                template=template,
                holder=data["holder"],
                idempotency_key=data["form_key"],
                **card_entry,
            )
        except AuthenticationPending as exc:
            return card_authenticate_page(request, exc, nav="portal/_nav.html")
        except PaymentFailed as exc:
            form.add_error(None, _declined_sentence(exc))
        except NotFound:
            raise
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            charge = sold.first_charge
            if charge["outcome"] == "declined":  # kept, unpaid: see membership_sign_up_online
                messages.error(
                    request,
                    f"You are signed up for {sold.name}, but {charge['message'][0].lower()}"
                    f"{charge['message'][1:]} Please contact the clinic to pay or to use "
                    "another card.",
                )
            elif charge["outcome"] == "pending":
                messages.warning(request, f"You are signed up for {sold.name}. {charge['message']}")
            else:
                paid = f" {charge['message']}" if charge["outcome"] == "charged" else ""
                messages.success(
                    request,
                    f"You are signed up for {sold.name}, starting "
                    f"{sold.start_date:%Y-%m-%d}.{paid}",
                )
            return redirect("portal:passes")
    return _with_stripe_js(
        request,
        form,
        passes_online.portal_entry_for(request.user) if stripe_on else "",
        "portal/membership_sign_up.html",
        {"clinic": clinic, "patient": patient, "tab": "passes", "template": template, "form": form},
        keep=True,
    )


def _membership_action(request, pk: int, work, success) -> object:
    """Run a patient's action on their own (or a dependant's) membership;
    a refusal becomes the message."""

    sold = memberships_online.portal_membership_get(request.user, pk)  # anyone else's: 404
    try:
        result = work(sold)
    except CarnetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success(sold, result))
    return redirect("portal:passes")


@require_POST
@patient_required
def membership_cancel(request, patient, pk: int):
    """Cancel at the end of the current cycle, if the membership allows it and its policy is met."""

    return _membership_action(
        request,
        pk,
        lambda sold: cancel(actor=request.user, sold_pass=sold, at_cycle_end=True, by_patient=True),
        lambda sold, done: (
            f"{sold.name} is cancelled: it covers visits until {done.ends_after:%Y-%m-%d} and "
            "is not billed again."
        ),
    )


@require_POST
@patient_required
def membership_pause(request, patient, pk: int):

    try:
        cycles = int(request.POST.get("cycles", ""))
        shown = int(
            request.POST.get("fee_minor", "0")
        )  # the freeze fee the page showed (issue 22 point 7)
    except ValueError:
        cycles, shown = 0, 0
    kind = request.POST.get("fee_kind", "none")
    fee_shown = shown * cycles if kind == "per_cycle" else shown if kind == "once" else 0
    return _membership_action(
        request,
        pk,
        lambda sold: pause(
            actor=request.user, sold_pass=sold, cycles=cycles, by_patient=True, fee_shown=fee_shown
        ),
        lambda sold, done: (
            f"{sold.name} is paused for {done.cycles} cycle{'s' if done.cycles != 1 else ''}: "
            "they are not billed, and it runs that much longer."
        ),
    )


@require_POST
@patient_required
def membership_resume(request, patient, pk: int):

    return _membership_action(
        request,
        pk,
        lambda sold: resume(actor=request.user, sold_pass=sold, by_patient=True),
        lambda sold, done: f"{sold.name} is resumed: its next cycles are billed again.",
    )


# ------------------------------------------------------ card update link (public, signed; issue 22)


def _card_request(request, token: str, *, for_done: bool = False):
    """(the card update request, None), or (None, the page saying why the link does not work)."""

    try:
        return card_requests.card_request_from_token(token, for_done=for_done), None
    except CarnetError as exc:
        return None, _card_link_page(request, exc)


def _card_link_page(request, exc: CarnetError):
    return render(
        request,
        "portal/card_link_invalid.html",
        {"clinic": clinic_get(), "message": exc.message, "code": exc.code},
        status=exc.status,
    )


def card_update(request, token: str):
    """The page a card update request's link opens: add a card for the membership, which then
    pays for it automatically; what is owed on it is charged at once."""

    # A used link may still be POSTed again by the very submit that used it (a reload): the service
    # answers that one from its form key and refuses any other.
    req, invalid = _card_request(request, token, for_done=request.method == "POST")
    if invalid:
        return invalid
    form, stripe_on = _card_form(request)
    try:
        done = _card_submit(
            request,
            form,
            stripe_on,
            lambda **card_entry: card_requests.card_update_complete(token=token, **card_entry),
            passes=card_requests.CardLinkError,
        )
    except (
        card_requests.CardLinkError
    ) as exc:  # used, replaced or expired meanwhile: the page says which
        return _card_link_page(request, exc)
    except (
        AuthenticationPending
    ) as exc:  # the bank asks the patient to confirm an owed cycle's charge
        return card_authenticate_page(request, exc, nav="portal/_public_nav.html")
    if done is not None:
        return redirect("portal:card_update_done", token=token)
    clinic, sold = clinic_get(), req.sold_pass
    owing = card_requests.owing_minor(sold)
    return _with_stripe_js(
        request,
        form,
        card_requests.card_entry_for(req) if stripe_on else "",
        "portal/card_update.html",
        {
            "clinic": clinic,
            "patient": req.patient,
            "sold": sold,
            "form": form,
            "req": req,
            "owing": clinic.money(owing) if owing else "",
            "next_amount": clinic.money(_next_amount(sold)),
        },
        keep=True,
    )


def _next_amount(sold) -> int:
    """A cycle from now on: the membership's cycle price (a price update applies from the
    next cycle), taxed."""

    return price_with_tax_minor(sold, sold.cycle_price_minor)


def card_update_done(request, token: str):
    """After the card was added: which card pays the membership now,
    and how charging what was owed went."""

    req, invalid = _card_request(request, token, for_done=True)
    if invalid:
        return invalid
    if req.completed_at is None or req.card_id is None:  # not used yet: the form
        return redirect("portal:card_update", token=token)
    clinic, sold = clinic_get(), req.sold_pass
    owed = list(card_requests.owed_rows(sold).select_related("invoice").order_by("seq"))
    return render(
        request,
        "portal/card_update_done.html",
        {
            "clinic": clinic,
            "patient": req.patient,
            "sold": sold,
            "req": req,
            "card": req.card,
            "owing": clinic.money(sum(max(r.invoice.balance_minor, 0) for r in owed)),
            "owed": [(r, clinic.money(r.invoice.balance_minor)) for r in owed],
        },
    )
