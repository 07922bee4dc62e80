"""Billing's emails (SPEC 3.3): a receipt, a Pay Balance request, a thank-you after paying.

Each one is queued with carnet.core.mail.mail_queue, so it leaves only after the caller's
transaction commits and is sent by the background worker. The Pay Balance link is signed and
expires after settings.PAY_BALANCE_LINK_DAYS; it carries only the patient's id.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse

from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity, clock
from carnet.core.errors import CarnetError, Conflict
from carnet.core.mail import Attachment, mail_queue
from carnet.core.permissions import Action, require
from carnet.core.signed_links import ClockSigner
from carnet.people.models import Patient

from .documents import DEFAULT_FORM, invoice_number, receipt_filename
from .models import Invoice, Payment
from .selectors import amount_owing, open_invoices

PAY_LINK_SALT = "carnet.billing.pay_balance"


class PayLinkInvalid(CarnetError):
    status = 400
    code = "pay_link_invalid"


class PayLinkExpired(CarnetError):
    status = 410
    code = "pay_link_expired"


def _signer() -> ClockSigner:
    return ClockSigner(salt=PAY_LINK_SALT)


def pay_link_token(patient: Patient) -> str:
    return _signer().sign(str(patient.pk))


def pay_link_patient(token: str) -> Patient:
    """The patient a Pay Balance link was made for; PayLinkInvalid or PayLinkExpired otherwise."""
    try:
        value, age = _signer().unsign_age(token)
    except (signing.BadSignature, ValueError):
        raise PayLinkInvalid(
            "This payment link is not valid. Check that you used the whole link from the email, "
            "or ask the clinic to send a new one."
        ) from None
    if age > timedelta(days=settings.PAY_BALANCE_LINK_DAYS).total_seconds():
        raise PayLinkExpired(
            f"This payment link has expired (links work for {settings.PAY_BALANCE_LINK_DAYS} "
            "days). Ask the clinic to send a new one."
        )
    patient = Patient.objects.filter(pk=int(value)).first()
    if patient is None:
        raise PayLinkInvalid(
            "This payment link is no longer valid. Ask the clinic to send a new one."
        )
    return patient


def _require_email(patient: Patient, what: str) -> None:
    if not patient.email:
        raise Conflict(
            f"{patient.full_name} has no email address, so the {what} cannot be emailed. "
            "Add one on their profile first.",
            code="no_email",
        )


def _reply_to() -> str:
    return clinic_get().email


@transaction.atomic
def receipt_email(*, actor, invoice: Invoice, form: str = DEFAULT_FORM) -> None:
    """Email the receipt, PDF attached, to the invoice's patient."""
    require(actor, Action.INVOICE_VIEW)
    patient, clinic = invoice.patient, clinic_get()
    _require_email(patient, "receipt")
    number = invoice_number(invoice, clinic)
    mail_queue(
        to=patient.email,
        subject=f"Your receipt {number} from {clinic.name}",
        reply_to=_reply_to(),
        template="billing/email/receipt.txt",
        context={
            "patient": patient,
            "clinic": clinic,
            "number": number,
            "invoice": invoice,
            "total": clinic.money(invoice.total_minor),
            "balance": clinic.money(invoice.balance_minor),
        },
        attachments=[
            Attachment(
                receipt_filename(invoice, clinic),
                "application/pdf",
                "carnet.billing.documents.receipt_pdf_for",
                {"invoice_id": invoice.pk, "form": form},
            )
        ],
    )
    activity.record(
        actor=actor, verb="receipt_emailed", obj=invoice, after={"to": patient.email, "form": form}
    )


@transaction.atomic
def pay_balance_request(*, actor, patient: Patient, base_url: str) -> str:
    """Email the patient a signed link to pay their whole balance by card. Returns the link."""
    require(actor, Action.PAYMENT_TAKE)
    _require_email(patient, "Pay Balance request")
    clinic = clinic_get()
    owing = amount_owing(patient)
    if owing <= 0:
        raise Conflict(
            f"{patient.full_name} owes nothing, so there is no balance to request.",
            code="nothing_owing",
        )
    link = base_url.rstrip("/") + reverse(
        "portal:pay_balance", kwargs={"token": pay_link_token(patient)}
    )
    expires = clock.now() + timedelta(days=settings.PAY_BALANCE_LINK_DAYS)
    mail_queue(
        to=patient.email,
        subject=f"Your balance at {clinic.name}",
        reply_to=_reply_to(),
        template="billing/email/pay_balance_request.txt",
        context={
            "patient": patient,
            "clinic": clinic,
            "link": link,
            "owing": clinic.money(owing),
            "invoices": [
                (invoice_number(i, clinic), clinic.money(i.balance_minor))
                for i in open_invoices(patient)
            ],
            "expires": clinic_today(clinic) + timedelta(days=settings.PAY_BALANCE_LINK_DAYS),
        },
    )
    activity.record(
        actor=actor,
        verb="pay_balance_requested",
        obj=patient,
        after={"to": patient.email, "owing_minor": owing, "expires_at": expires.isoformat()},
    )
    return link


def balance_paid_email(*, payment: Payment) -> None:
    """Thank the patient for paying online, with a receipt for each invoice the payment settled.
    Joins the caller's transaction; a patient without an email simply gets none."""
    patient, clinic = payment.patient, clinic_get()
    if not patient.email:
        return
    invoices = list(
        Invoice.objects.filter(allocations__payment=payment, allocations__unapplied_at__isnull=True)
        .distinct()
        .order_by("number")
    )
    mail_queue(
        to=patient.email,
        subject=f"Payment received by {clinic.name}",
        reply_to=_reply_to(),
        template="billing/email/balance_paid.txt",
        context={
            "patient": patient,
            "clinic": clinic,
            "amount": clinic.money(payment.amount_minor),
            "payment": payment,
            "numbers": [invoice_number(i, clinic) for i in invoices],
        },
        attachments=[
            Attachment(
                receipt_filename(i, clinic),
                "application/pdf",
                "carnet.billing.documents.receipt_pdf_for",
                {"invoice_id": i.pk},
            )
            for i in invoices
        ],
    )
