"""Buying a package online from the patient portal, paid by card through the gateway (SPEC 9.1, 11).

The patient (or a guardian, for a dependant) is the actor: there is no staff access check, only
"is this one of the patients I manage". The money path is billing's online payment: the card is
charged OUTSIDE our database transaction (no row locks held over the network), then the sale, its
invoice and the payment applied to it are recorded together.

One IdempotencyRecord per form key (scope `pass-online:<buyer>`) holds the attempt, as billing's
Pay Balance does: while PENDING, the gateway token, amount, patient and template of the first try,
so a retry charges the same card for the same amount under the same gateway key (the gateway
charges once); once RECORDED, the pass id. A declined card frees the key (nothing was charged);
a lost response keeps it, so the retry asks the gateway about the same charge.
"""

from __future__ import annotations

import json

from django.db import transaction

from carnet.billing.payments import (
    _PENDING,
    _RECORDED,
    _attempt_claim,
    _attempt_get,
    _record_payment,
)
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError, Conflict, NotFound, ValidationFailed
from carnet.core.models import IdempotencyRecord
from carnet.people.models import Patient
from carnet.people.selectors import patients_managed_by

from .models import Pass, PassInvoice, PassTemplate
from .selling import _instalment_plan, package_sell


def _buyer(user) -> Patient:
    patient = getattr(user, "patient", None) if getattr(user, "is_authenticated", False) else None
    if patient is None:
        raise NotFound("Log in to your patient account to buy a package online.")
    return patient


def _managed_ids(user) -> set[int]:
    return {p.pk for p in patients_managed_by(_buyer(user))}


def online_templates():
    """Packages the clinic sells online now (empty when the clinic's online sales are off)."""
    if not clinic_get().online_sales_enabled:
        return PassTemplate.objects.none()
    return (PassTemplate.objects.filter(kind=PassTemplate.Kind.PACKAGE, sold_online=True, archived=False,
                                        items__isnull=False).distinct().order_by("name", "pk"))


def online_template_get(pk: int) -> PassTemplate:
    template = online_templates().filter(pk=pk).first()
    if template is None:
        raise NotFound(f"No package with id {pk} is sold online.")
    return template


def online_price_minor(template: PassTemplate) -> int:
    """What is charged now: the whole price, or the first instalment of a payment plan (tax included)."""
    return _instalment_plan(template, clinic_get().currency)[0][1]


def portal_passes(user):
    """The passes of the portal user and their dependants (deleted ones hidden), newest first."""
    return (Pass.objects.filter(patient_id__in=_managed_ids(user)).exclude(status=Pass.Status.DELETED)
            .select_related("patient").order_by("-purchased_at", "-pk"))


def portal_pass_get(user, pk: int) -> Pass:
    sold = portal_passes(user).filter(pk=pk).first()
    if sold is None:
        raise NotFound(f"No package with id {pk}.")
    return sold


def _check_sellable(template: PassTemplate) -> None:
    if not clinic_get().online_sales_enabled:
        raise Conflict("Packages are not sold online at the moment. Please ask at the front desk.",
                       code="online_sales_off")
    if template.kind != PassTemplate.Kind.PACKAGE or not template.sold_online or template.archived:
        raise Conflict(f"{template} is not sold online; please ask at the front desk.", code="not_sold_online")
    if not template.items.exists():
        raise Conflict(f"{template} cannot be sold at the moment; please ask at the front desk.",
                       code="not_sold_online")


def _sale_invoice(sold: Pass):
    row = PassInvoice.objects.select_related("invoice").get(sold_pass=sold, seq=1)
    return row.invoice


def package_buy_online(*, user, patient: Patient, template: PassTemplate, card_number: str, exp_month: int,
                       exp_year: int, cvc: str, holder: str, idempotency_key: str) -> Pass:
    """The portal user buys `template` for themselves or a dependant, paying by card now.

    A double submit or retry with the same key charges once and returns the same pass. A free
    package is sold without charging. If the sale is refused after the card was charged (say
    the template was archived in between), the payment is still recorded, as credit.
    """
    buyer = _buyer(user)
    if patient is None or patient.pk not in _managed_ids(user):
        raise NotFound("No such patient.")
    key = (idempotency_key or "").strip()
    if not 1 <= len(key) <= 100:
        raise ValidationFailed("This form is missing its key; reload the page and try again.",
                               fields={"form_key": ["Missing."]})
    from carnet.billing.emails import balance_paid_email
    from carnet.billing.models import Payment
    from carnet.gateway.base import get_gateway
    from carnet.gateway.models import BRAND_LABELS
    from carnet.gateway.services import PaymentFailed, card_charge

    scope = f"pass-online:{buyer.pk}"
    attempt = _attempt_get(scope, key)
    if attempt is None:
        _check_sellable(template)
        amount = online_price_minor(template)
        token = card = ""
        if amount > 0:
            holder = (holder or "").strip()
            if not holder or len(holder) > 120:
                raise ValidationFailed("Please enter the name on the card (at most 120 characters).",
                                       fields={"holder": ["Enter the name on the card."]})
            stored = get_gateway().store_card(number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc,
                                              holder=holder)  # a bad number, expiry or CVC stops here
            token, card = stored.token, f"{BRAND_LABELS.get(stored.brand, 'Card')} •••• {stored.last4}"
        attempt = _attempt_claim(scope, key, {"token": token, "amount": amount, "card": card, "pass": None,
                                              "patient": patient.pk, "template": template.pk})
    if attempt.get("pass"):
        return Pass.objects.get(pk=attempt["pass"])
    if attempt.get("payment"):  # charged, but the sale was refused: the money is the patient's credit
        raise Conflict("Your payment was received but the package could not be sold; the amount is kept as "
                       "credit on your account. Please contact the clinic.", code="kept_as_credit")
    amount = attempt["amount"]
    charge_id = ""
    if amount > 0:
        try:
            charge_id = card_charge(card_or_token=attempt["token"], amount_minor=amount,
                                    currency=clinic_get().currency,
                                    idempotency_key=f"pass-online-{buyer.pk}-{key}").charge_id
        except PaymentFailed:
            IdempotencyRecord.objects.filter(scope=scope, key=key, status_code=_PENDING).delete()
            raise
    owner = Patient.objects.get(pk=attempt["patient"])
    chosen = PassTemplate.objects.get(pk=attempt["template"])
    refused = None
    with transaction.atomic():
        # The conditional update lets exactly one of two racing twins record the sale.
        if not IdempotencyRecord.objects.filter(scope=scope, key=key, status_code=_PENDING).update(
                status_code=_RECORDED):
            done = _attempt_get(scope, key)
            if done.get("pass"):
                return Pass.objects.get(pk=done["pass"])
            raise Conflict("This purchase is already being processed. Wait a moment, then reload the page.",
                           code="payment_in_progress")
        sold = payment = None
        try:
            with transaction.atomic():
                _check_sellable(chosen)
                sold = package_sell(actor=user, patient=owner, template=chosen, action=None, online=True)
        except CarnetError as exc:
            if not charge_id:
                raise  # nothing charged: the whole attempt rolls back, the key with it
            refused = exc
        if charge_id:
            allocations = []
            if sold is not None:
                invoice = _sale_invoice(sold)
                allocations = [(invoice, min(amount, invoice.balance_minor))] if invoice.balance_minor else []
            reference = (f"{chosen.name} bought online, {attempt['card']}" if sold is not None
                         else f"Online purchase of {chosen.name} refused, {attempt['card']}")
            payment = _record_payment(actor=None, verb="paid_online", patient=owner,
                                      method=Payment.Method.CARD_GATEWAY, amount_minor=amount,
                                      reference=reference, allocations=allocations, charge_id=charge_id)
        IdempotencyRecord.objects.filter(scope=scope, key=key).update(body=json.dumps(
            {"pass": sold.pk if sold else None, "payment": payment.pk if payment else None}).encode())
        if payment is not None and sold is not None:
            balance_paid_email(payment=payment)  # the receipt, sent once the transaction commits
    if refused is not None:
        raise Conflict(f"{refused.message} Your payment was received and is kept as credit on your account; "
                       "please contact the clinic.", code="kept_as_credit")
    return sold
