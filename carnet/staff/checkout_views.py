"""Billing → New purchase: one checkout that sells and takes the payment in the same step.

Opened from an appointment's panel ("Sell a package", `?appointment=`), the patient is that
appointment's, the packages that could cover the visit come first with the first of them chosen,
the sale happens at the appointment's location, and once sold (and paid, if the desk takes the
payment) the new package covers the visit in the same action; the desk lands back on the
schedule with the panel open."""

from dataclasses import replace
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from carnet.billing.models import CardAttempt
from carnet.billing.views import (
    card_authenticated,
    card_entry_render,
    new_card_entered,
    staff_card_entry_for,
)
from carnet.clinic.selectors import clinic_get, location_default
from carnet.core.errors import CarnetError, NotAllowed, NotFound, ValidationFailed
from carnet.core.idempotency import new_form_key
from carnet.core.pages import not_allowed, save_once, staff_required
from carnet.core.permissions import Action, staff_of
from carnet.gateway.services import (
    AuthenticationPending,
    GatewayUnavailable,
    card_authenticate_page,
    card_file_stored,
    card_label,
)
from carnet.passes.selectors import passes_for_patient, templates_covering
from carnet.people.selectors import patient_get
from carnet.scheduling.models import Status
from carnet.scheduling.selectors import appointment_get

from .checkout import (
    checkout_charge_card,
    checkout_cover_visit,
    checkout_pay_at_desk,
    checkout_sell,
    checkout_totals,
    gift_cards_from,
)
from .checkout_forms import CARD_METHODS, CheckoutForm


def _summary(clinic, sale) -> str:
    numbers = ", ".join(
        [str(i) for i in sale.invoices] + [f"gift card {c.code}" for c, _ in sale.gift_cards]
    )
    owing = sale.owing_minor()
    paid = " — paid." if not owing else f"; {clinic.money(owing)} still owing."
    return f"Sold: {numbers}, {clinic.money(sale.total_minor)} in all{paid}"


def _visit(request, patient):
    """The patient's visit in the appointment this sale is made from (`appointment`), or None.
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
    visit = next(
        (
            r
            for r in appointment.visits.all()
            if r.patient_id == patient.pk and r.status != Status.CANCELLED
        ),
        None,
    )
    if visit is None:
        raise Http404(f"{patient.full_name} is not in that appointment.")
    visit.appointment = appointment
    return visit


def _back_to(visit) -> str:
    """The schedule on the appointment's day with its panel open."""
    appointment = visit.appointment
    day = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone)).date()
    query = urlencode(
        {"location": appointment.location_id, "date": day.isoformat(), "open": appointment.pk}
    )
    return f"{reverse('scheduling:schedule')}?{query}"


def _charge_card(request, patient, sale, done: dict, *, tender, entered, key: str, visit) -> None:
    """After the sale has committed: charge the card (outside any transaction), then cover the visit
    the sale was made from. A decline keeps the sale, owing, and says so. A new card whose bank asks
    its holder to confirm (3-D Secure) leaves the charge waiting: done["authenticate"]."""

    clinic = clinic_get()
    try:
        checkout_charge_card(
            actor=request.user,
            patient=patient,
            sale=sale,
            amount_minor=tender.amount_minor,
            key=key,
            card=tender.card,
            token=entered.token if entered else "",
            label=card_label(entered) if entered else "",
            on_session=entered is not None,
        )
    except AuthenticationPending as exc:
        done["authenticate"] = exc
        return
    except (
        GatewayUnavailable
    ) as exc:  # maybe charged: reconciliation records it (and loads a gift card) once
        messages.warning(
            request,
            f"The sale is recorded, but the card payment of {clinic.money(tender.amount_minor)} "
            f"has no answer yet: {exc.message} It is checked with the gateway automatically "
            "(Reports → Card payments to review); do not charge it again meanwhile.",
        )
        sale.gift_cards = []
    except CarnetError as exc:
        gifts = (
            f" The gift card {', '.join(c.code for c, _ in sale.gift_cards)} was not sold."
            if sale.gift_cards
            else ""
        )
        messages.warning(
            request,
            f"The sale is recorded, but the card payment of {clinic.money(tender.amount_minor)} "
            f"did not go through: {exc.message} {clinic.money(sale.owing_minor())} is still "
            f"owing; take another payment from the Billing tab.{gifts}",
        )
        sale.gift_cards = []
    if visit is not None and sale.passes:
        with transaction.atomic():
            done["pass"], done["why_not"] = checkout_cover_visit(
                actor=request.user, passes=sale.passes, visit=visit
            )


@require_POST
@staff_required(Action.PAYMENT_TAKE)
def purchase_authenticated(request, pk: int, attempt_pk: int):
    """Back from the bank's check of a card paying a sale made from an appointment: the outcome as
    billing records it (`card_authenticated`), then the sale's package covers the visit and the desk
    is back on the schedule with the panel open, as when no check was asked for."""

    response = card_authenticated(request, attempt_pk)
    attempt = CardAttempt.objects.filter(pk=attempt_pk, patient_id=pk).first()
    if (
        response.status_code != 302
        or attempt is None
        or attempt.status != CardAttempt.Status.SUCCEEDED
    ):
        return response  # the check again, or a refusal that billing's message explains
    patient = patient_get(pk)
    try:
        visit = _visit(request, patient)
    except (Http404, NotAllowed):
        return response
    wanted = {int(n) for n in request.GET.get("passes", "").split(",") if n.isdigit()}
    passes = list(passes_for_patient(patient).filter(pk__in=wanted).order_by("pk"))
    if visit is None or not passes:
        return response
    with transaction.atomic():
        sold, why_not = checkout_cover_visit(actor=request.user, passes=passes, visit=visit)
    _covered_message(request, sold, why_not)
    return redirect(_back_to(visit))


def _covered_message(request, sold, why_not: str) -> None:
    if sold is not None:
        messages.success(request, f"{sold.name} now covers the appointment.")
    elif why_not:
        messages.warning(
            request,
            f"Not applied to the appointment: {why_not} "
            "Use it from the appointment once it can cover the visit.",
        )


@staff_required(Action.SELL)
def purchase_totals(request, pk: int):
    """The checkout's live totals (htmx, as items change): subtotal, each tax by name and rate, the
    gift cards and the total, worked out by billing's own invoice arithmetic (checkout_totals)."""
    patient, clinic = patient_get(pk), clinic_get()
    form = CheckoutForm(request.GET, clinic=clinic, patient=patient, staff=staff_of(request.user))
    try:
        cart = form.cart_for_totals()
        totals, problem = checkout_totals(cart), ""
    except CarnetError as exc:
        cart, totals, problem = None, None, exc.message
    taxes = [
        (tax.name, format(tax.rate.normalize(), "f"), clinic.money(amount))
        for tax, amount in (totals.taxes if totals else [])
    ]
    return render(
        request,
        "staff/_checkout_totals.html",
        {
            "clinic": clinic,
            "totals": totals,
            "taxes": taxes,
            "problem": problem,
            "gift": clinic.money(cart.gift_minor) if cart and cart.gift_minor else "",
            "subtotal": clinic.money(totals.subtotal_minor) if totals else "",
            "total": clinic.money(totals.total_minor) if totals else "",
        },
    )


@staff_required(Action.SELL)
def purchase_new(request, pk: int):
    patient, clinic, staff = patient_get(pk), clinic_get(), staff_of(request.user)
    try:
        visit = _visit(request, patient)
    except NotAllowed as exc:
        return not_allowed(request, exc.message)
    covering = templates_covering(visit.appointment.treatment) if visit else []
    entry_for = staff_card_entry_for(request)
    form = CheckoutForm(
        request.POST or None,
        clinic=clinic,
        patient=patient,
        staff=staff,
        covering=covering,
        initial=_checkout_initial(request, visit, covering),
        stripe_entry_for=entry_for,
    )
    if request.method == "POST" and form.is_valid():
        response = _checkout_submit(
            request, form, clinic, patient=patient, staff=staff, visit=visit
        )
        if response is not None:
            return response
    return _checkout_page(
        request, form, clinic, patient, visit=visit, covering=covering, entry_for=entry_for
    )


def _checkout_initial(request, visit, covering) -> dict:
    initial = {"form_key": new_form_key()}
    # "Sell a package" chooses the first package that covers the visit; "Add items" (items=1) none.
    if visit:
        chosen = covering[0].pk if covering and not request.GET.get("items") else None
        initial.update(
            appointment=visit.appointment.pk,
            location=visit.appointment.location_id,
            package_0=chosen,
        )
    return initial


def _checkout_submit(request, form, clinic, *, patient, staff, visit):
    """Sell once (save_once), then charge a card and cover the visit: the response to send, or None
    to show the form again with its errors."""
    done: dict = {}
    key = f"{request.user.pk}-{form.cleaned_data['form_key']}"
    entered = new_card_entered(form, patient)

    def write():
        return _sale_write(request, form, patient, staff, visit, entered, key, done)

    outcome, result = save_once(request, form, write) if entered is not False else ("error", None)
    if outcome == "denied":
        return result
    if outcome == "ok" and done.get("card") is not None:
        _charge_card(
            request,
            patient,
            result,
            done,
            tender=done["card"],
            entered=entered,
            key=key,
            visit=visit,
        )
    if outcome == "ok" and done.get("authenticate"):
        messages.success(request, _summary(clinic, result))
        return _authenticate_page(request, patient, done["authenticate"], visit, result)
    if outcome == "ok":
        messages.success(request, _summary(clinic, result))
        _covered_message(request, done.get("pass"), done.get("why_not", ""))
    if outcome in ("ok", "repeat"):
        return redirect(_back_to(visit) if visit else reverse("billing:tab", args=[patient.pk]))
    return None


def _sale_write(request, form, patient, staff, visit, entered, key: str, done: dict):
    """In save_once's transaction: keep a new card, sell, take the desk's payment, and cover the
    visit (unless a card is still to be charged, which happens after the commit)."""
    d = form.cleaned_data
    kept = (
        card_file_stored(actor=request.user, patient=patient, stored=entered, holder=d["holder"])
        if entered and form.keeps_new_card()
        else None
    )
    sale = checkout_sell(
        actor=request.user,
        patient=patient,
        cart=form.cart(new_card=kept),
        location=d.get("location") or location_default(staff=staff),
    )
    owing = sale.due_now_minor()
    if form.pays_now() and owing:
        done["card"] = _pay_at_desk(request, form, patient, sale, owing, key, kept)
    if visit is not None and sale.passes and done.get("card") is None:
        done["pass"], done["why_not"] = checkout_cover_visit(
            actor=request.user, passes=sale.passes, visit=visit
        )
    return sale


def _pay_at_desk(request, form, patient, sale, owing: int, key: str, kept):
    """The desk's ways to pay, recorded with the sale; the card one (to charge after the commit),
    or None."""
    tenders = form.tenders(owing=owing)
    received = sum(t.amount_minor for t in tenders)
    question = form.credit_confirmed(received=received, applied=min(received, owing))
    if question:  # rolls the sale back with it: nothing is recorded until the desk answers
        raise ValidationFailed(question)
    checkout_pay_at_desk(
        actor=request.user,
        patient=patient,
        sale=sale,
        key=key,
        tenders=[t for t in tenders if t.method not in CARD_METHODS],
        card_follows=any(t.method in CARD_METHODS for t in tenders),
    )
    card = next(
        (replace(t, card=kept or t.card) for t in tenders if t.method in CARD_METHODS),
        None,
    )
    if card is not None:  # the card carries the gift cards: checked before anything commits
        gift_cards_from(sale, card)
    return card


def _authenticate_page(request, patient, pending, visit, sale):
    """The bank's check of a new card; once confirmed, a package sold from an appointment covers
    its visit."""
    action = reverse("billing:card_authenticated", args=[pending.attempt.pk])
    if visit is not None and sale.passes:
        action = (
            reverse("billing:purchase_authenticated", args=[patient.pk, pending.attempt.pk])
            + "?"
            + urlencode(
                {
                    "appointment": visit.appointment.pk,
                    "passes": ",".join(str(p.pk) for p in sale.passes),
                }
            )
        )
    return card_authenticate_page(request, pending, staff=True, action=action)


def _checkout_page(request, form, clinic, patient, *, visit, covering, entry_for: str):
    context = {
        "patient": patient,
        "form": form,
        "clinic": clinic,
        "visit": visit,
        "covering": covering,
    }
    if visit:
        zone = ZoneInfo(visit.appointment.location.time_zone)
        context.update(
            visit_start=visit.appointment.start.astimezone(zone).replace(tzinfo=None),
            back=_back_to(visit),
        )
    return card_entry_render(
        request, "staff/checkout.html", context, form=form, entry_for=entry_for
    )
