"""Billing → New purchase: one checkout that sells and takes the payment in the same step."""

from django.contrib import messages
from django.shortcuts import redirect, render

from carnet.clinic.selectors import clinic_get, location_default
from carnet.core.errors import ValidationFailed
from carnet.core.idempotency import new_form_key
from carnet.core.permissions import Action, staff_of
from carnet.people.selectors import patient_get

from .checkout import checkout_pay_at_desk, checkout_sell
from .checkout_forms import CheckoutForm
from .decorators import save_once, staff_required


def _summary(clinic, sale) -> str:
    numbers = ", ".join(str(i) for i in sale.invoices)
    owing = sale.owing_minor()
    paid = " — paid." if not owing else f"; {clinic.money(owing)} still owing."
    return f"Sold: {numbers}, {clinic.money(sale.total_minor)} in all{paid}"


@staff_required(Action.SELL)
def purchase_new(request, pk: int):
    patient, clinic, staff = patient_get(pk), clinic_get(), staff_of(request.user)
    form = CheckoutForm(request.POST or None, clinic=clinic, staff=staff, initial={"form_key": new_form_key()})
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data

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
            return sale

        outcome, result = save_once(request, form, write)
        if outcome == "denied":
            return result
        if outcome == "ok":
            messages.success(request, _summary(clinic, result))
            return redirect("billing:tab", pk=pk)
        if outcome == "repeat":
            return redirect("billing:tab", pk=pk)
    return render(request, "staff/checkout.html", {"patient": patient, "form": form, "clinic": clinic})
