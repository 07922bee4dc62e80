"""Passes' emails: a pass invoice (a cycle or an instalment) charged (receipt attached) or declined
(to the patient and the clinic), and a reminder before a pass expires (SPEC 9.6, 9.10). All
queued after commit."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from carnet.billing.documents import DEFAULT_FORM, invoice_number, receipt_filename
from carnet.billing.emails import pay_link_token
from carnet.clinic.selectors import clinic_get
from carnet.core.mail import Attachment, mail_queue


def _hello(patient) -> str:
    return patient.preferred_name or patient.first_name


def pass_invoice_receipt_email(*, row, payment) -> None:
    sold, invoice, clinic = row.sold_pass, row.invoice, clinic_get()
    if not sold.patient.email:
        return
    mail_queue(
        to=sold.patient.email,
        subject=f"Payment received for {sold.name} — {clinic.name}",
        template="passes/email/instalment_charged.txt",
        context={
            "name": _hello(sold.patient),
            "pass": sold,
            "row": row,
            "clinic": clinic,
            "amount": clinic.money(payment.amount_minor),
            "number": invoice_number(invoice, clinic),
        },
        attachments=[
            Attachment(
                receipt_filename(invoice, clinic),
                "application/pdf",
                "carnet.billing.documents.receipt_pdf_for",
                {"invoice_id": invoice.pk, "form": DEFAULT_FORM},
            )
        ],
    )


def pass_invoice_declined_email(*, row, reason: str, authenticate: bool = False) -> None:
    """authenticate: the patient's bank wants them to confirm the charge (3-D Secure), so the
    patient gets their Pay Balance link, where they confirm with their bank and pay."""
    sold, clinic = row.sold_pass, clinic_get()
    context = {
        "name": _hello(sold.patient),
        "pass": sold,
        "row": row,
        "clinic": clinic,
        "reason": reason,
        "amount": clinic.money(row.invoice.total_minor),
        "patient": sold.patient,
        "retry_on": row.next_attempt_on,
        "authenticate": authenticate,
        "pay_link": "",
    }
    if authenticate:
        if settings.SITE_URL:  # the daily job has no request to take the address from
            context["pay_link"] = settings.SITE_URL + reverse(
                "portal:pay_balance", kwargs={"token": pay_link_token(sold.patient)}
            )
    if sold.patient.email:
        mail_queue(
            to=sold.patient.email,
            subject=f"Your payment for {sold.name} did not go through",
            template="passes/email/instalment_declined.txt",
            context=context,
        )
    if clinic.email:
        mail_queue(
            to=clinic.email,
            subject=f"Declined: {sold.patient} — {sold.name} payment {row.seq}",
            template="passes/email/instalment_declined_clinic.txt",
            context=context,
        )


def expiry_reminder_email(*, sold) -> None:
    clinic = clinic_get()
    mail_queue(
        to=sold.patient.email,
        subject=f"Your {sold.name} expires on {sold.expires_on:%Y-%m-%d}",
        template="passes/email/expiry_reminder.txt",
        context={"name": _hello(sold.patient), "pass": sold, "clinic": clinic},
    )
