"""Billing endpoints: invoices, payments, credit, unapply, refunds, cards on file.

Every POST here accepts `Idempotency-Key` (core.middleware); the key is also the payment
gateway's idempotency key, so a retried card payment never charges twice. A card payment or
refund requires one (400 `idempotency_key_required`).
"""

from typing import Literal

from django.conf import settings
from django.db.models import Prefetch
from ninja import Router, Status

from carnet.clinic.models import Location
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.idempotency import calls_gateway, request_key
from carnet.core.permissions import Action, require, staff_of
from carnet.gateway.selectors import card_get, cards_for_patient
from carnet.gateway.services import (
    card_remove,
    card_setup_begin,
    card_setup_complete,
    card_store,
    gateway_uses_stripe_js,
    stripe_js_url,
)
from carnet.people.selectors import patient_for, patient_get

from . import documents, emails, payments
from . import schemas as s
from .document_views import pdf_response
from .invoicing import LineInput, invoice_create, invoice_delete
from .models import Allocation, Invoice, InvoiceLine, Payment
from .selectors import allocations_for, amount_owing, credit_balance, payments_in_detail

router = Router(tags=["billing"])

_INVOICES = Invoice.objects.prefetch_related(
    Prefetch("lines", queryset=InvoiceLine.objects.prefetch_related("line_taxes"))
)
_PAYMENTS = payments_in_detail()


def _invoice(request, pk: int) -> Invoice:
    invoice, missing = _INVOICES.filter(pk=pk).first(), NotFound(f"No invoice with id {pk}.")
    if invoice is None:
        raise missing
    patient_for(
        request.auth, invoice.patient_id, action=Action.INVOICE_VIEW, not_found=missing
    )  # other patients' too
    return invoice


def _payment(request, pk: int) -> Payment:
    payment, missing = _PAYMENTS.filter(pk=pk).first(), NotFound(f"No payment with id {pk}.")
    if payment is None:
        raise missing
    patient_for(request.auth, payment.patient_id, action=Action.INVOICE_VIEW, not_found=missing)
    return payment


@router.get("/patients/{pk}/account", response=s.AccountOut, operation_id="patient_account")
def account(request, pk: int):
    patient = patient_for(request.auth, pk, action=Action.INVOICE_VIEW)
    return {
        "patient_id": pk,
        "owing_minor": amount_owing(patient),
        "credit_minor": credit_balance(patient),
        "currency": clinic_get().currency,
    }


@router.get("/patients/{pk}/invoices", response=list[s.InvoiceOut], operation_id="invoices_list")
def invoices(request, pk: int):
    patient = patient_for(request.auth, pk, action=Action.INVOICE_VIEW)
    return list(_INVOICES.filter(patient=patient))


@router.post("/invoices", response={201: s.InvoiceOut}, operation_id="invoice_create")
def create_invoice(request, payload: s.InvoiceIn):
    require(request.auth, Action.SELL)
    location = None
    if payload.location_id is not None:
        location = Location.objects.filter(pk=payload.location_id).first()
        if location is None:
            raise ValidationFailed(
                f"No location with id {payload.location_id}.", fields={"location_id": ["Unknown."]}
            )
    invoice = invoice_create(
        actor=request.auth,
        patient=patient_get(payload.patient_id),
        location=location,
        notes=payload.notes,
        lines=[LineInput(**line.dict()) for line in payload.lines],
    )
    return Status(201, _INVOICES.get(pk=invoice.pk))


@router.get("/invoices/{pk}", response=s.InvoiceOut, operation_id="invoice_read")
def read_invoice(request, pk: int):
    return _invoice(request, pk)


@router.delete("/invoices/{pk}", response=s.InvoiceOut, operation_id="invoice_delete")
def delete_invoice(request, pk: int):
    require(request.auth, Action.INVOICE_DELETE)
    invoice_delete(actor=request.auth, invoice=_invoice(request, pk))
    return _INVOICES.get(pk=pk)


@router.get(
    "/invoices/{pk}/receipt.pdf",
    response={200: None},
    operation_id="receipt_pdf",
    summary="The receipt as a PDF (form: quick, standard or detailed)",
)
def receipt_pdf(request, pk: int, form: Literal["quick", "standard", "detailed"] = "standard"):
    invoice = _invoice(request, pk)
    return pdf_response(documents.receipt_pdf(invoice, form), documents.receipt_filename(invoice))


@router.post(
    "/invoices/{pk}/receipt/email", response={202: s.QueuedOut}, operation_id="receipt_email"
)
def email_receipt(request, pk: int, form: Literal["quick", "standard", "detailed"] = "standard"):
    invoice = _invoice(request, pk)
    emails.receipt_email(actor=request.auth, invoice=invoice, form=form)
    return Status(202, {"detail": f"The receipt is queued for {invoice.patient.email}."})


@router.get("/patients/{pk}/statement.pdf", response={200: None}, operation_id="statement_pdf")
def statement_pdf(request, pk: int):
    patient = patient_for(request.auth, pk, action=Action.INVOICE_VIEW)
    return pdf_response(documents.statement_pdf(patient), documents.statement_filename(patient))


@router.post(
    "/patients/{pk}/pay-balance-request",
    response={202: s.QueuedOut},
    operation_id="pay_balance_request",
)
def pay_balance(request, pk: int):
    require(request.auth, Action.PAYMENT_TAKE)
    patient = patient_get(pk)
    emails.pay_balance_request(
        actor=request.auth,
        patient=patient,
        base_url=settings.SITE_URL or request.build_absolute_uri("/"),
    )
    return Status(202, {"detail": f"A Pay Balance request is queued for {patient.email}."})


@router.get("/patients/{pk}/payments", response=list[s.PaymentOut], operation_id="payments_list")
def payments_list(request, pk: int):
    patient = patient_for(request.auth, pk, action=Action.INVOICE_VIEW)
    return list(_PAYMENTS.filter(patient=patient))


@router.post("/payments", response={201: s.PaymentOut}, operation_id="payment_receive")
@calls_gateway(lambda request, body, kwargs: body.get("method") == Payment.Method.CARD_GATEWAY)
def receive_payment(request, payload: s.PaymentIn):
    require(request.auth, Action.PAYMENT_TAKE)
    patient = patient_get(payload.patient_id)
    card = card_get(payload.card_id) if payload.card_id is not None else None
    payment = payments.payment_receive(
        actor=request.auth,
        patient=patient,
        method=payload.method,
        amount_minor=payload.amount_minor,
        reference=payload.reference,
        allocations=allocations_for(patient=patient, items=payload.allocations),
        card=card,
        idempotency_key=request_key(
            request,
            required=payload.method == Payment.Method.CARD_GATEWAY,
            why="a card payment charges the card.",
        ),
    )
    return Status(201, _PAYMENTS.get(pk=payment.pk))


@router.get("/payments/{pk}", response=s.PaymentOut, operation_id="payment_read")
def read_payment(request, pk: int):
    return _payment(request, pk)


@router.post("/payments/{pk}/apply", response={201: s.AllocationOut}, operation_id="payment_apply")
def apply_payment(request, pk: int, payload: s.ApplyIn):
    require(request.auth, Action.PAYMENT_TAKE)
    payment = _payment(request, pk)
    allocation = payments.payment_apply(
        actor=request.auth,
        payment=payment,
        invoice=_invoice(request, payload.invoice_id),
        amount_minor=payload.amount_minor,
    )
    return Status(201, allocation)


@router.post(
    "/patients/{pk}/credit/apply",
    response={201: list[s.AllocationOut]},
    operation_id="credit_apply",
)
def apply_credit(request, pk: int, payload: s.CreditApplyIn):
    require(request.auth, Action.PAYMENT_TAKE)
    patient = patient_get(pk)
    invoice = _invoice(request, payload.invoice_id)
    if invoice.patient_id != patient.pk:
        raise ValidationFailed(
            "That invoice belongs to another patient.",
            fields={"invoice_id": ["Not this patient's."]},
        )
    return Status(
        201,
        payments.credit_apply(
            actor=request.auth, patient=patient, invoice=invoice, amount_minor=payload.amount_minor
        ),
    )


@router.post(
    "/allocations/{pk}/unapply", response=s.AllocationOut, operation_id="allocation_unapply"
)
def unapply(request, pk: int):
    require(request.auth, Action.PAYMENT_UNAPPLY)
    allocation = Allocation.objects.filter(pk=pk).first()
    if allocation is None:
        raise NotFound(f"No allocation with id {pk}.")
    return payments.allocation_unapply(actor=request.auth, allocation=allocation)


def _refund_to_card(request, body, kwargs) -> bool:
    pk = str(kwargs.get("pk", ""))
    method = body.get("method") or (
        Payment.objects.filter(pk=int(pk)).values_list("method", flat=True).first()
        if pk.isdigit() and len(pk) < 19
        else None
    )
    return method == Payment.Method.CARD_GATEWAY


@router.post("/payments/{pk}/refunds", response={201: s.RefundOut}, operation_id="payment_refund")
@calls_gateway(_refund_to_card)
def refund(request, pk: int, payload: s.RefundIn):
    require(request.auth, Action.REFUND)
    payment = _payment(request, pk)
    key = request_key(
        request,
        required=(payload.method or payment.method) == Payment.Method.CARD_GATEWAY,
        why="a refund to the card sends money back to it.",
    )
    return Status(
        201,
        payments.payment_refund(
            actor=request.auth,
            payment=payment,
            amount_minor=payload.amount_minor,
            method=payload.method,
            reason=payload.reason,
            idempotency_key=key,
        ),
    )


@router.get("/patients/{pk}/cards", response=list[s.CardOut], operation_id="cards_list")
def cards(request, pk: int):
    return list(cards_for_patient(patient_for(request.auth, pk, action=Action.INVOICE_VIEW)))


@router.post("/patients/{pk}/cards", response={201: s.CardOut}, operation_id="card_store")
@calls_gateway()  # the card is kept at the gateway, outside any transaction
def store_card(request, pk: int, payload: s.CardIn):
    require(request.auth, Action.PAYMENT_TAKE)
    return Status(201, card_store(actor=request.auth, patient=patient_get(pk), **payload.dict()))


def _card_setup_patient(request, pk: int):
    """(patient, whether the patient saves their own card): staff who take payments for anyone; a
    patient for themself or a dependant (anyone else: not found)."""
    patient = patient_for(request.auth, pk, action=Action.PAYMENT_TAKE)
    if not gateway_uses_stripe_js():
        raise Conflict(
            "This clinic's card processor takes no SetupIntents; save a card with POST "
            "/patients/{id}/cards.",
            code="card_setup_unavailable",
        )
    return patient, staff_of(request.auth) is None


@router.post(
    "/patients/{pk}/cards/setup", response={201: s.CardSetupOut}, operation_id="card_setup_begin"
)
@calls_gateway()  # a Stripe customer and SetupIntent are made, outside any transaction
def card_setup(request, pk: int):
    """Start saving a card with Stripe.js: a SetupIntent on the patient's Stripe customer. Confirm
    it in the browser with stripe.confirmCardSetup(client_secret, …) (the card goes to Stripe only),
    then POST its id to /patients/{pk}/cards/setup/complete (Stripe's setup_intent.succeeded
    webhook keeps the card too, once). The same Idempotency-Key from the same caller returns the
    same SetupIntent."""
    patient, own = _card_setup_patient(request, pk)
    started = card_setup_begin(actor=request.auth, patient=patient, patient_actor=own)
    return Status(201, {**started, "js_url": stripe_js_url()})


@router.post(
    "/patients/{pk}/cards/setup/complete",
    response={201: s.CardOut},
    operation_id="card_setup_complete",
)
@calls_gateway()
def card_setup_done(request, pk: int, payload: s.CardSetupIn):
    """The card a confirmed SetupIntent of this patient's saved, kept on file once (Carnet reads it
    from Stripe by id: brand, last four and expiry only)."""
    patient, own = _card_setup_patient(request, pk)
    return Status(
        201,
        card_setup_complete(
            actor=request.auth,
            patient=patient,
            setup_intent=payload.setup_intent,
            holder=payload.holder,
            patient_actor=own,
        ),
    )


@router.delete("/cards/{pk}", response=s.CardOut, operation_id="card_remove")
def remove_card(request, pk: int):
    require(request.auth, Action.PAYMENT_TAKE)
    return card_remove(actor=request.auth, card=card_get(pk))
