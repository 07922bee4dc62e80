"""Billing → New purchase: one checkout that sells and takes the payment in the same step.

Opened from an appointment's panel ("Sell a package", `?appointment=`), the patient is that
appointment's, the packages that could cover the visit come first with the first of them chosen,
the sale happens at the appointment's location, and once sold (and paid, if the desk takes the
payment) the new package covers the visit in the same action; the desk lands back on the
schedule with the panel open."""

from zoneinfo import ZoneInfo

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode

from carnet.clinic.selectors import clinic_get, location_default
from carnet.core.errors import NotAllowed, NotFound, ValidationFailed
from carnet.core.idempotency import new_form_key
from carnet.core.permissions import Action, staff_of
from carnet.passes.selectors import templates_covering
from carnet.people.selectors import patient_get
from carnet.scheduling.models import Status
from carnet.scheduling.selectors import appointment_get

from .checkout import checkout_cover_visit, checkout_pay_at_desk, checkout_sell
from .checkout_forms import CheckoutForm
from .decorators import not_allowed, save_once, staff_required


def _summary(clinic, sale) -> str:
    numbers = ", ".join(str(i) for i in sale.invoices)
    owing = sale.owing_minor()
    paid = " — paid." if not owing else f"; {clinic.money(owing)} still owing."
    return f"Sold: {numbers}, {clinic.money(sale.total_minor)} in all{paid}"


def _visit(request, patient):
    """The patient's row in the appointment this sale is made from (`appointment`), or None.
    The actor must be allowed on that appointment's schedule (NotAllowed otherwise)."""
    raw = request.POST.get("appointment") or request.GET.get("appointment") or ""
    if not raw:
        return None
    if not raw.isdigit():
        raise Http404("No such appointment.")
    try:
        appointment = appointment_get(actor=request.user, pk=int(raw))
    except NotFound:
        raise Http404("No such appointment.")
    row = next((r for r in appointment.participants.all()
                if r.patient_id == patient.pk and r.status != Status.CANCELLED), None)
    if row is None:
        raise Http404(f"{patient.full_name} is not in that appointment.")
    row.appointment = appointment
    return row


def _back_to(visit) -> str:
    """The schedule on the appointment's day with its panel open."""
    appointment = visit.appointment
    day = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone)).date()
    query = urlencode({"location": appointment.location_id, "date": day.isoformat(), "open": appointment.pk})
    return f"{reverse('scheduling:schedule')}?{query}"


@staff_required(Action.SELL)
def purchase_new(request, pk: int):
    patient, clinic, staff = patient_get(pk), clinic_get(), staff_of(request.user)
    try:
        visit = _visit(request, patient)
    except NotAllowed as exc:
        return not_allowed(request, exc.message)
    covering = templates_covering(visit.appointment.treatment) if visit else []
    initial = {"form_key": new_form_key()}
    if visit:
        initial.update(appointment=visit.appointment.pk, location=visit.appointment.location_id,
                       package_0=covering[0].pk if covering else None)
    form = CheckoutForm(request.POST or None, clinic=clinic, staff=staff, covering=covering, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        applied = {}

        def write():
            sale = checkout_sell(actor=request.user, patient=patient, cart=form.cart(),
                                 location=d.get("location") or location_default(staff=staff))
            owing = sale.owing_minor()
            if form.pays_now() and owing:
                tenders = form.tenders(owing=owing)
                received = sum(t.amount_minor for t in tenders)
                question = form.credit_confirmed(received=received, applied=min(received, owing))
                if question:  # rolls the sale back with it: nothing is recorded until the desk answers
                    raise ValidationFailed(question)
                checkout_pay_at_desk(actor=request.user, patient=patient, sale=sale, tenders=tenders,
                                     key=f"{request.user.pk}-{d['form_key']}")
            if visit is not None and sale.passes:
                applied["pass"], applied["why_not"] = checkout_cover_visit(actor=request.user, sale=sale, visit=visit)
            return sale

        outcome, result = save_once(request, form, write)
        if outcome == "denied":
            return result
        if outcome == "ok":
            messages.success(request, _summary(clinic, result))
            if applied.get("pass"):
                messages.success(request, f"{applied['pass'].name} now covers the appointment.")
            elif applied.get("why_not"):
                messages.warning(request, f"Not applied to the appointment: {applied['why_not']} "
                                          "Use it from the appointment once it can cover the visit.")
        if outcome in ("ok", "repeat"):
            return redirect(_back_to(visit) if visit else reverse("billing:tab", args=[pk]))
    context = {"patient": patient, "form": form, "clinic": clinic, "visit": visit, "covering": covering}
    if visit:
        zone = ZoneInfo(visit.appointment.location.time_zone)
        context.update(visit_start=visit.appointment.start.astimezone(zone).replace(tzinfo=None),
                       back=_back_to(visit))
    return render(request, "staff/checkout.html", context)
