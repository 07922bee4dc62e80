"""Staff pages for receipts, statements and the Pay Balance request (SPEC 3.3)."""

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from carnet.core.pages import run_action, staff_required
from carnet.core.permissions import Action
from carnet.people.selectors import patient_get

from . import documents, emails
from .selectors import invoice_get


def pdf_response(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@staff_required(Action.INVOICE_VIEW)
def receipt(request, pk: int):
    context = documents.receipt_context(
        invoice_get(pk), request.GET.get("form", documents.DEFAULT_FORM)
    )
    return render(request, "billing/receipt.html", context)


@staff_required(Action.INVOICE_VIEW)
def receipt_pdf(request, pk: int):
    invoice = invoice_get(pk)
    content = documents.receipt_pdf(invoice, request.GET.get("form", documents.DEFAULT_FORM))
    return pdf_response(content, documents.receipt_filename(invoice))


@require_POST
@staff_required(Action.INVOICE_VIEW)
def receipt_email(request, pk: int):
    invoice = invoice_get(pk)
    form = request.POST.get("form", documents.DEFAULT_FORM)
    if form not in documents.RECEIPT_FORMS:
        form = documents.DEFAULT_FORM
    _, denied = run_action(
        request,
        lambda: emails.receipt_email(actor=request.user, invoice=invoice, form=form),
        success=f"The receipt for invoice {documents.invoice_number(invoice)} is on its way to "
        f"{invoice.patient.email}.",
    )
    return denied or redirect("billing:tab", pk=invoice.patient_id)


@staff_required(Action.INVOICE_VIEW)
def statement(request, pk: int):
    return render(request, "billing/statement.html", documents.statement_context(patient_get(pk)))


@staff_required(Action.INVOICE_VIEW)
def statement_pdf(request, pk: int):
    patient = patient_get(pk)
    return pdf_response(documents.statement_pdf(patient), documents.statement_filename(patient))


@require_POST
@staff_required(Action.PAYMENT_TAKE)
def pay_balance_request(request, pk: int):
    patient = patient_get(pk)
    base_url = settings.SITE_URL or request.build_absolute_uri("/")
    _, denied = run_action(
        request,
        lambda: emails.pay_balance_request(actor=request.user, patient=patient, base_url=base_url),
        success=f"A Pay Balance request is on its way to {patient.email}.",
    )
    return denied or redirect("billing:tab", pk=patient.pk)
