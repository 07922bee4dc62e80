"""Signing up for a membership online from the patient portal (SPEC 6, 11), paid automatically by
the card the patient enters, which stays on file. Who may buy, what is offered online and keeping a
card typed online are `passes.online`'s, as for a package bought there.
"""

from __future__ import annotations

import json

from django.db import IntegrityError, transaction
from django.db.models import F

from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.errors import Conflict, NotFound
from carnet.core.models import IdempotencyRecord
from carnet.passes.charging import pass_charge_due
from carnet.passes.models import Pass, PassInvoice, PassTemplate
from carnet.passes.online import (
    buyer_and_key,
    card_keep_online,
    card_take_to_keep,
    offered_get,
    offered_online,
    portal_entry_for,
    portal_passes,
)
from carnet.passes.setup.intro_offers import intro_check
from carnet.people.models import Patient

from .services import membership_sell


def online_membership_templates():
    """Memberships the clinic offers for online sign-up (empty when online sales are off)."""
    return offered_online(PassTemplate.Kind.MEMBERSHIP)


def online_membership_template_get(pk: int) -> PassTemplate:
    return offered_get(PassTemplate.Kind.MEMBERSHIP, pk)


def portal_membership_get(user, pk: int) -> Pass:
    """One of the portal user's (or a dependant's) memberships; anyone else's is "not found"."""
    sold = portal_passes(user).filter(pk=pk, kind=Pass.Kind.MEMBERSHIP).first()
    if sold is None:
        raise NotFound(f"No membership with id {pk}.")
    return sold


def _signup_get(scope: str, key: str) -> dict | None:
    record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
    return None if record is None else json.loads(bytes(record.body))


def _check_membership_sellable(template: PassTemplate, owner: Patient, *, lock: bool) -> None:
    """`lock`: inside the sale's transaction, the intro-offer check locks the patient's row."""
    if not clinic_get().online_sales_enabled:
        raise Conflict(
            "Memberships are not sold online at the moment. Please ask at the front desk.",
            code="online_sales_off",
        )
    if (
        template.kind != PassTemplate.Kind.MEMBERSHIP
        or not template.sold_online
        or template.archived
    ):
        raise Conflict(
            f"{template} is not offered online; please ask at the front desk.",
            code="not_sold_online",
        )
    if Pass.objects.filter(patient=owner, template=template, status=Pass.Status.ACTIVE).exists():
        # A second one by mistake (or after a declined card) would bill twice;
        # the clinic can sell another.
        raise Conflict(
            f"{owner.full_name} already has {template.name}. See it under Packages & Memberships.",
            code="already_member",
        )
    intro_check(actor=None, template=template, patient=owner, lock=lock)


def _membership_sold_once(
    *, user, patient: Patient, template: PassTemplate, stored, holder: str, scope: str, key: str
):
    """In one transaction: the form key's record, the sale checked again, the card kept and the
    membership sold — (the membership, None); or, when a twin submission with this key committed
    first, (None, what it recorded)."""
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                scope=scope,
                key=key,
                request_hash="",
                status_code=201,
                content_type="application/json",
                created_at=clock.now(),
                body=b"{}",
            )
            _check_membership_sellable(
                template, patient, lock=True
            )  # again, now that a twin's sale is visible
            card = card_keep_online(user=user, patient=patient, stored=stored, holder=holder)
            sold = membership_sell(
                actor=user,
                patient=patient,
                template=template,
                payment_mode=Pass.PaymentMode.AUTOMATIC,
                card=card,
                action=None,
                online=True,
            )
            record.body = json.dumps({"pass": sold.pk}).encode()
            record.save(update_fields=["body"])
    except IntegrityError:  # a twin submission with this key committed first: its membership
        done = _signup_get(scope, key)
        if not done or not done.get("pass"):
            raise Conflict(
                "This sign-up is already being processed. Wait a moment, then reload the page.",
                code="payment_in_progress",
            ) from None
        return None, done
    return sold, None


def membership_sign_up_online(
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
    """The portal user signs up for a membership (for themselves or a dependant), paid automatically
    by the card they enter: it is kept on file, the membership is sold (automatic payment, the
    patient as actor, no staff check) and committed, then the first cycle is charged with
    `pass_charge_due`, outside any transaction, as the staff page does.

    Once per form key: the key's IdempotencyRecord (scope `membership-online:<buyer>`) is inserted
    in the sale's own transaction, so a twin submission waits for it and gets the same membership;
    a repeat never charges again (the cycle's charge has its own gateway key and is due only once).

    A declined first charge KEEPS the membership, unpaid, and the decline is reported to the caller
    (`membership.first_charge`): it is then exactly an automatic membership whose charge failed at
    the desk (SPEC 6.2) — the cycle's invoice stays open, the patient and the clinic are emailed and
    the job retries the card on the clinic's retry schedule (passes.dunning; the email promises
    that retry, so deleting the membership afterwards would contradict it). The clinic can delete it
    (nothing was paid) or take the payment; a second online sign-up for the same membership is
    refused meanwhile. Returns the membership with `first_charge` = {"outcome": charged | declined |
    pending | none, "message"}.
    """

    buyer, key = buyer_and_key(user, patient, idempotency_key)
    scope = f"membership-online:{buyer.pk}"
    done = _signup_get(scope, key)
    if done is None:
        if template.kind != PassTemplate.Kind.MEMBERSHIP:
            raise NotFound("No such membership.")
        _check_membership_sellable(template, patient, lock=False)
        stored, holder = card_take_to_keep(
            patient=patient,
            holder=holder,
            entry_for=portal_entry_for(user),
            card_number=card_number,
            exp_month=exp_month,
            exp_year=exp_year,
            cvc=cvc,
            setup_intent=setup_intent,
        )
        sold, done = _membership_sold_once(
            user=user,
            patient=patient,
            template=template,
            stored=stored,
            holder=holder,
            scope=scope,
            key=key,
        )
    if done is not None:
        sold = Pass.objects.get(pk=done["pass"])
    # A repeat finds nothing due: charged once, or retried by the job. The patient is at the page:
    # a bank that asks them to confirm the first cycle (3-D Secure) is answered there, and the same
    # form posted again (same key, same membership) reads the outcome.
    run = pass_charge_due(sold_pass=sold, on_session=True)
    if run.authenticate is not None:
        raise run.authenticate
    sold.first_charge = first_charge_outcome(sold, run)
    return sold


def first_charge_outcome(sold: Pass, run) -> dict:
    """How charging an automatic membership's due cycle went, for a page or an API response."""
    clinic = clinic_get()
    if run.charged:
        rows = PassInvoice.objects.filter(pk__in=run.charged).select_related("invoice")
        paid = clinic.money(sum(r.invoice.total_minor for r in rows))
        return {"outcome": "charged", "message": f"{paid} was charged to {sold.card}."}
    if run.declined:
        row = PassInvoice.objects.get(pk=run.declined[-1])
        retry = (
            f" The card is tried again on {row.next_attempt_on:%Y-%m-%d}."
            if row.next_attempt_on
            else ""
        )
        return {
            "outcome": "declined",
            "message": f"The card was declined: {row.last_error} The cycle's invoice "
            f"stays unpaid.{retry}",
        }
    waiting = (
        sold.pass_invoices.filter(
            invoice__isnull=False,
            invoice__applied_minor__lt=F("invoice__total_minor"),
            invoice__deleted_at__isnull=True,
            next_attempt_on__isnull=False,
        )
        .order_by("-seq")
        .first()
    )
    if waiting is not None:
        why = f" ({waiting.last_error})" if waiting.last_error else ""
        return {
            "outcome": "pending",
            "message": f"The card has not been charged yet{why}; it is tried again on "
            f"{waiting.next_attempt_on:%Y-%m-%d}.",
        }
    return {"outcome": "none", "message": "Nothing is due now."}
