"""The patient portal ("My Account"): a patient sees their own record and their dependants'."""

from functools import wraps
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from carnet.billing import documents, emails
from carnet.billing.document_views import pdf_response
from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import balance_pay_online
from carnet.billing.selectors import amount_owing, open_invoices
from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.errors import CarnetError, NotFound
from carnet.core.idempotency import new_form_key
from carnet.gateway.services import PaymentFailed
from carnet.people.selectors import patient_family, patients_managed_by
from carnet.scheduling import online
from carnet.staff.decorators import apply_errors
from carnet.staff.views import login_view

from .forms import GiftCardBuyForm, PayBalanceForm


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


@patient_required
def home(request, patient):
    upcoming, past = online.patient_appointments(patient=patient)
    now = clock.now()
    return render(request, "portal/home.html", {
        "upcoming": [(row, row.status == "booked" and now <= online.cancel_deadline(row.appointment)) for row in upcoming],
        "past": past,
        "patient": patient, "clinic": clinic_get(),
        "family": patient_family(patient), "dependants": patients_managed_by(patient)[1:],
        "invoices": Invoice.objects.filter(patient__in=patients_managed_by(patient), deleted_at__isnull=True)
        .select_related("patient").order_by("-invoice_date", "-number")[:50],
        "owing": clinic_get().money(amount_owing(patient)), "pay_token": emails.pay_link_token(patient),
    })


@require_POST
@patient_required
def appointment_cancel(request, patient, pk: int):
    """Cancel an own (or a dependant's) appointment, refused inside the clinic's cancellation window."""
    try:
        appointment = online.appointment_cancel_by_patient(user=request.user, row_pk=pk)
    except NotFound:
        raise  # someone else's appointment: a plain 404
    except CarnetError as exc:
        messages.error(request, exc.message)
    else:
        when = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone))
        messages.success(request, f"Cancelled: {appointment.treatment} on {when:%A %-d %B at %H:%M}.")
    return redirect("portal:home")


@patient_required
def receipt_pdf(request, patient, pk: int):
    """A receipt of the patient's own, or a dependant's; any other invoice is "not found"."""
    invoice = Invoice.objects.filter(pk=pk, patient__in=patients_managed_by(patient), deleted_at__isnull=True).first()
    if invoice is None:
        raise NotFound(f"No receipt with id {pk}.")
    return pdf_response(documents.receipt_pdf(invoice), documents.receipt_filename(invoice))


@patient_required
def gift_card_buy(request, patient):
    """Buy a gift card by card (SPEC 7) when the clinic sells them online; the code goes to the recipient."""
    from carnet.giftcards.services import giftcard_sell_online

    clinic = clinic_get()
    on = clinic.gift_cards_enabled and clinic.gift_card_online_sales_enabled
    form = GiftCardBuyForm(request.POST or None, currency=clinic.currency, initial={"form_key": new_form_key()})
    if on and request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            card = giftcard_sell_online(
                patient=patient, amount_minor=data["amount"] or 0, recipient_name=data["recipient_name"],
                recipient_email=data["recipient_email"], card_number=data["number"], exp_month=data["exp_month"],
                exp_year=data["exp_year"], cvc=data["cvc"], holder=data["holder"], idempotency_key=data["form_key"])
        except PaymentFailed as exc:
            form.add_error(None, _declined_sentence(exc))
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            return render(request, "portal/gift_card_bought.html", {
                "clinic": clinic, "patient": patient, "card": card, "amount": clinic.money(card.balance_minor)})
    return render(request, "portal/gift_card_buy.html", {
        "clinic": clinic, "patient": patient, "form": form, "on": on, "minimum": clinic.money(clinic.gift_card_online_minimum_minor)})


# ---------------------------------------------------------------- Pay Balance link (public, signed)


def _link_patient(request, token: str):
    """(patient, None), or (None, the page explaining why the link does not work)."""
    try:
        return emails.pay_link_patient(token), None
    except (emails.PayLinkInvalid, emails.PayLinkExpired) as exc:
        return None, render(request, "portal/pay_link_invalid.html",
                            {"clinic": clinic_get(), "message": exc.message, "expired": exc.status == 410},
                            status=exc.status)


def _declined_sentence(exc: PaymentFailed) -> str:
    # The gateway's own first sentence (the reason), then what the patient can do on this page.
    reason = exc.message.split(". ")[0].rstrip(".")
    return f"{reason}. Nothing was charged. Please try another card, or contact the clinic."


def pay_balance(request, token: str):
    patient, invalid = _link_patient(request, token)
    if invalid:
        return invalid
    form = PayBalanceForm(request.POST or None, initial={"form_key": new_form_key()})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            payment = balance_pay_online(
                patient=patient, card_number=data["number"], exp_month=data["exp_month"],
                exp_year=data["exp_year"], cvc=data["cvc"], holder=data["holder"], idempotency_key=data["form_key"])
        except PaymentFailed as exc:
            form.add_error(None, _declined_sentence(exc))
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            return redirect("portal:pay_balance_paid", token=token, payment_pk=payment.pk)
    clinic = clinic_get()
    invoices = list(open_invoices(patient))
    return render(request, "portal/pay_balance.html", {
        "clinic": clinic, "patient": patient, "form": form,
        "invoices": [(documents.invoice_number(i, clinic), i, clinic.money(i.balance_minor)) for i in invoices],
        "owing": clinic.money(sum(i.balance_minor for i in invoices)),
    })


def pay_balance_paid(request, token: str, payment_pk: int):
    patient, invalid = _link_patient(request, token)
    if invalid:
        return invalid
    payment = Payment.objects.filter(pk=payment_pk, patient=patient).first()
    if payment is None:
        raise NotFound("No such payment.")
    clinic = clinic_get()
    paid = Invoice.objects.filter(allocations__payment=payment, allocations__unapplied_at__isnull=True).distinct()
    return render(request, "portal/pay_balance_paid.html", {
        "clinic": clinic, "patient": patient, "payment": payment, "amount": clinic.money(payment.amount_minor),
        "numbers": [documents.invoice_number(i, clinic) for i in paid.order_by("number")],
    })
