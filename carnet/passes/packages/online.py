"""Buying a package online from the patient portal, paid by card through the gateway (SPEC 9.1, 11).

The patient (or a guardian, for a dependant) is the actor: there is no staff access check, only
"is this one of the patients I manage". The money path is billing's online payment: the card is
charged OUTSIDE our database transaction (no row locks held over the network), then the sale, its
invoice and the payment applied to it are recorded together.

A purchase is a card attempt (billing.card_attempts, purpose "pass_online") keyed by the form:
the sale itself is the attempt's purpose step, recorded with the payment once the charge
succeeded — inline, or by payments_reconcile after a crash or a lost answer.

Who may buy online, what the clinic offers there and keeping a card typed online serve both kinds
(`passes.online`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from carnet.billing.card_attempts import Purpose, purpose_register
from carnet.billing.emails import balance_paid_email
from carnet.billing.models import CardAttempt
from carnet.billing.payments import card_pay_online, payment_apply_system
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import Conflict
from carnet.core.idempotency import claim_form_key
from carnet.passes.models import Pass, PassInvoice, PassTemplate
from carnet.passes.online import buyer_and_key, offered_get, offered_online, portal_entry_for
from carnet.passes.setup.intro_offers import intro_check
from carnet.people.models import Patient

from .selling import instalment_plan, package_sell


def online_templates():
    """Packages the clinic sells online now (empty when the clinic's online sales are off)."""
    return offered_online(PassTemplate.Kind.PACKAGE)


def online_template_get(pk: int) -> PassTemplate:
    return offered_get(PassTemplate.Kind.PACKAGE, pk)


def online_price_minor(template: PassTemplate) -> int:
    """What is charged now: the whole price, or the first instalment of a payment
    plan (tax included)."""
    return instalment_plan(template, clinic_get().currency)[0][1]


def online_total_minor(template: PassTemplate) -> int:
    """The whole price with its taxes (every instalment of a payment plan),
    as the patient will pay it."""
    return sum(gross for _unit, gross, _net in instalment_plan(template, clinic_get().currency))


def _check_sellable(template: PassTemplate) -> None:
    if not clinic_get().online_sales_enabled:
        raise Conflict(
            "Packages are not sold online at the moment. Please ask at the front desk.",
            code="online_sales_off",
        )
    if template.kind != PassTemplate.Kind.PACKAGE or not template.sold_online or template.archived:
        raise Conflict(
            f"{template} is not sold online; please ask at the front desk.", code="not_sold_online"
        )
    if not template.items.exists():
        raise Conflict(
            f"{template} cannot be sold at the moment; please ask at the front desk.",
            code="not_sold_online",
        )


def _sale_invoice(sold: Pass):
    row = PassInvoice.objects.select_related("invoice").get(sold_pass=sold, seq=1)
    return row.invoice


def package_buy_online(
    *,
    user,
    patient: Patient,
    template: PassTemplate,
    holder: str,
    idempotency_key: str,
    card_number: str = "",
    exp_month: int = 0,
    exp_year: int = 0,
    cvc: str = "",
    setup_intent: str = "",
) -> Pass:
    """The portal user buys `template` for themselves or a dependant, paying by card now.

    A double submit or retry with the same key charges once and returns the same pass. A free
    package is sold without charging. If the sale is refused after the card was charged (say
    the template was archived in between), the payment is still recorded, as credit.
    """
    buyer, key = buyer_and_key(user, patient, idempotency_key)
    request_key = f"pass-online:{buyer.pk}:{key}"
    amount = 0
    if not CardAttempt.objects.filter(request_key=request_key).exists():  # the first submit
        amount = _price_checked(user, patient, template)
        if amount <= 0:
            return _free_package(
                user=user, patient=patient, template=template, request_key=request_key
            )
    card_entry = {
        "number": card_number,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "cvc": cvc,
        "holder": holder,
        "setup_intent": setup_intent,
        "entry_for": portal_entry_for(user),
    }
    attempt = card_pay_online(
        patient=patient,
        purpose="pass_online",
        request_key=request_key,
        amount_minor=amount,
        card_entry=card_entry,
        context={
            "reference": f"{template.name} bought online",
            "template": template.pk,
            "user": user.pk,
        },
    )
    return _package_bought(attempt)


def _price_checked(user, patient: Patient, template: PassTemplate) -> int:
    """What the package costs online, once it is checked to be sold online and its intro offer to
    be open to the patient: before any card is charged."""
    _check_sellable(template)
    intro_check(actor=user, template=template, patient=patient, lock=False)
    return online_price_minor(template)


def _package_bought(attempt: CardAttempt) -> Pass:
    """The package the charge sold; a Conflict when the sale was refused after the charge (the
    payment is then kept as the patient's credit)."""
    if attempt.context.get("pass"):
        return Pass.objects.get(pk=attempt.context["pass"])
    raise Conflict(
        f"{attempt.message} Please contact the clinic."
        if attempt.message
        else (
            "Your payment was received but the package could not be sold; the amount is kept as "
            "credit on your account. Please contact the clinic."
        ),
        code="kept_as_credit",
    )


def _free_package(*, user, patient: Patient, template: PassTemplate, request_key: str) -> Pass:

    with transaction.atomic():
        if not claim_form_key(user=user, key=request_key):  # a double submit: the first one's sale
            return Pass.objects.filter(patient=patient, template=template).latest(
                "purchased_at", "pk"
            )
        return package_sell(
            actor=user, patient=patient, template=template, action=None, online=True
        )


def _sell_bought_package(attempt: CardAttempt, payment) -> None:
    """The charge for an online purchase succeeded: sell the package and pay its invoice."""

    template = PassTemplate.objects.get(pk=attempt.context["template"])
    _check_sellable(template)
    user = get_user_model().objects.get(pk=attempt.context["user"])
    sold = package_sell(
        actor=user, patient=attempt.patient, template=template, action=None, online=True
    )
    invoice = _sale_invoice(sold)
    payment_apply_system(payment=payment, invoice=invoice, amount_minor=attempt.amount_minor)
    attempt.context = {**attempt.context, "pass": sold.pk}
    balance_paid_email(payment=payment)  # the receipt, sent once the transaction commits


purpose_register(
    Purpose(name="pass_online", reference="Package bought online", on_charged=_sell_bought_package)
)
