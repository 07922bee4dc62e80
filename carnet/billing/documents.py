"""Receipts and statements (SPEC 3.3): one template each, shown as a page or rendered to PDF.

These are selectors: they read and never write. The page and the PDF include the same document
template (billing/_receipt.html, billing/_statement.html); the PDF adds only print CSS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string

from carnet.clinic.models import Tax
from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.errors import ValidationFailed
from carnet.core.money import Money

from .models import Allocation, Invoice, Payment, Refund
from .selectors import amount_owing, credit_balance, invoice_get

# What passes adds to a receipt: the package(s) covering the visit an invoice bills, and a pass
# sale's terms. Passes sits above billing, so it registers both when it loads (passes.apps);
# without passes a receipt has neither.
_PASS_PARTS: dict[str, Callable[[Invoice], list[dict]]] = {
    "coverage": lambda invoice: [],
    "sale_terms": lambda invoice: [],
}


def receipt_pass_parts_register(
    *, coverage: Callable[[Invoice], list[dict]], sale_terms: Callable[[Invoice], list[dict]]
) -> None:
    _PASS_PARTS.update(coverage=coverage, sale_terms=sale_terms)


RECEIPT_FORMS = {"quick": "Quick receipt", "standard": "Receipt", "detailed": "Detailed receipt"}
DEFAULT_FORM = "standard"


def invoice_number(invoice: Invoice, clinic=None) -> str:
    """The number patients see: the clinic's prefix and the gap-free sequence number."""
    return f"{(clinic or clinic_get()).invoice_prefix}{invoice.number}"


def receipt_filename(invoice: Invoice, clinic=None) -> str:
    return f"receipt-{invoice_number(invoice, clinic)}.pdf".replace("/", "-").replace(" ", "")


def _check_form(form: str) -> str:
    form = form or DEFAULT_FORM
    if form not in RECEIPT_FORMS:
        raise ValidationFailed(
            f"“{form}” is not a receipt form; choose quick, standard or detailed.",
            fields={"form": ["quick, standard or detailed"]},
        )
    return form


def _clinic_header(clinic) -> dict:
    """Name, address, contact and tax registrations (one line per registration number)."""
    registrations = defaultdict(list)
    for tax in Tax.objects.exclude(registration_number="").order_by("name"):
        registrations[tax.registration_number].append(tax.name)
    return {
        "clinic": clinic,
        "registrations": [("/".join(names), number) for number, names in registrations.items()],
    }


@dataclass(frozen=True)
class ReceiptLine:
    description: str
    staff: str
    quantity: int
    unit_price: Money
    original: Money  # quantity × unit price, before the discount
    discount: Money
    amount: Money  # the revenue part (before tax); these add up to the subtotal
    tax: Money
    total: Money
    tax_inclusive: bool


def receipt_context(invoice: Invoice, form: str = DEFAULT_FORM) -> dict:
    """Everything a receipt shows, as display-ready values (Money formats itself)."""
    form = _check_form(form)
    clinic = clinic_get()
    zone = ZoneInfo(clinic.time_zone)
    money = clinic.money
    invoice = invoice_get(invoice.pk)  # fresh totals, with patient and location
    lines, taxes = [], defaultdict(int)
    for line in invoice.lines.select_related("staff").prefetch_related("line_taxes__tax"):
        original = line.unit_price_minor * line.quantity
        lines.append(
            ReceiptLine(
                description=line.description,
                staff=line.staff.display_name if line.staff else "",
                quantity=line.quantity,
                unit_price=money(line.unit_price_minor),
                original=money(original),
                discount=money(line.adjustment_minor),
                amount=money(line.net_minor),
                tax=money(line.tax_minor),
                total=money(line.total_minor),
                tax_inclusive=line.tax_inclusive,
            )
        )
        for line_tax in line.line_taxes.all():
            taxes[(line_tax.tax.name, line_tax.rate.normalize())] += line_tax.amount_minor
    payments = [
        {
            "method": a.payment.get_method_display(),
            "detail": _payment_detail(a.payment),
            "date": a.payment.received_at.astimezone(zone).date(),
            "amount": money(a.amount_minor),
        }
        for a in Allocation.objects.filter(invoice=invoice, unapplied_at__isnull=True)
        .select_related("payment__card")
        .order_by("applied_at", "pk")
    ]
    coverage = _pass_coverage(invoice, money)
    prepaid = sum(c["prepaid"].minor for c in coverage)
    # SPEC 9.11: the visit's full value is its prepaid share plus this invoice; the prepaid share
    # shows as paid. The invoice's own total, payments and balance are unchanged.
    insurer_ready = bool(clinic.insurer_ready_receipts and prepaid > 0)
    return {
        **_clinic_header(clinic),
        "form": form,
        "form_label": RECEIPT_FORMS[form],
        "forms": RECEIPT_FORMS,
        "invoice": invoice,
        "number": invoice_number(invoice, clinic),
        "patient": invoice.patient,
        "location": invoice.location,
        "lines": lines,
        "taxes": [
            (f"{name} {rate}%", money(amount)) for (name, rate), amount in sorted(taxes.items())
        ],
        "subtotal": money(invoice.subtotal_minor),
        "tax": money(invoice.tax_minor),
        "total": money(invoice.total_minor),
        "paid": money(invoice.applied_minor),
        "balance": money(invoice.balance_minor),
        "payments": payments,
        "status": invoice.status,
        "issued_on": clock.today(zone),
        "coverage": coverage,
        "sale_terms": _sale_terms(invoice),
        "insurer_ready": insurer_ready,
        "prepaid": money(prepaid),
        "visit_value": money(invoice.total_minor + prepaid),
        "paid_in_all": money(invoice.applied_minor + prepaid),
    }


def _pass_coverage(invoice: Invoice, money) -> list[dict]:
    """SPEC 9.2: the package(s) covering the visit this invoice bills, with the sessions left."""
    return [
        {
            **c,
            "prepaid": money(c["prepaid_minor"]),
            "additional_charge": money(c["additional_charge_minor"]),
            "drawn": money(c["drawn_minor"]),
            "value_left_after": None
            if c["value_left_after_minor"] is None
            else money(c["value_left_after_minor"]),
        }
        for c in _PASS_PARTS["coverage"](invoice)
    ]


def _sale_terms(invoice: Invoice) -> list[dict]:
    """Issue 23: a pass sale's receipt states its expiry and the clinic's disclosure at sale."""
    return _PASS_PARTS["sale_terms"](invoice)


def _payment_detail(payment: Payment) -> str:
    if payment.card_id:
        return f"{payment.card.brand_label} •••• {payment.card.last4}"
    return payment.reference


def _pdf(template: str, context: dict) -> bytes:
    from weasyprint import CSS, HTML  # imported here: pango loads only when a PDF is made

    html = render_to_string(template, context)
    stylesheet = CSS(filename=finders.find("carnet/documents.css"))
    return HTML(string=html).write_pdf(stylesheets=[stylesheet])


def receipt_pdf(invoice: Invoice, form: str = DEFAULT_FORM) -> bytes:
    return _pdf("billing/receipt_pdf.html", receipt_context(invoice, form))


def receipt_pdf_for(*, invoice_id: int, form: str = DEFAULT_FORM) -> bytes:
    """For the email worker, whose arguments are JSON: the invoice by id."""
    return receipt_pdf(invoice_get(invoice_id), form)


def statement_context(patient) -> dict:
    """The patient's account: open invoices, then every charge, payment and refund with a
    running balance. That balance ends at what they owe less their credit."""
    clinic = clinic_get()
    zone = ZoneInfo(clinic.time_zone)
    money = clinic.money
    invoices = list(
        Invoice.objects.filter(patient=patient, deleted_at__isnull=True).order_by(
            "invoice_date", "number"
        )
    )
    events = [
        (i.invoice_date, 0, i.number, f"Invoice {invoice_number(i, clinic)}", i.total_minor, 0)
        for i in invoices
    ]
    for p in Payment.objects.filter(patient=patient).select_related("card"):
        label = f"Payment, {p.get_method_display()}" + (
            f" ({_payment_detail(p)})" if _payment_detail(p) else ""
        )
        events.append((p.received_at.astimezone(zone).date(), 1, p.pk, label, 0, p.amount_minor))
    for r in Refund.objects.filter(
        payment__patient=patient
    ):  # money back to the patient: a negative payment
        events.append(
            (
                r.refunded_at.astimezone(zone).date(),
                2,
                r.pk,
                f"Refund, {r.get_method_display()}",
                0,
                -r.amount_minor,
            )
        )
    activity, running = [], 0
    for when, _, _, label, charge, credit in sorted(events):
        running += charge - credit
        activity.append(
            {
                "date": when,
                "label": label,
                "charge": money(charge) if charge else None,
                "payment": money(credit) if credit else None,
                "balance": money(running),
            }
        )
    owing, credit = amount_owing(patient), credit_balance(patient)
    open_invoices = [
        {
            "number": invoice_number(i, clinic),
            "date": i.invoice_date,
            "total": money(i.total_minor),
            "paid": money(i.applied_minor),
            "balance": money(i.balance_minor),
        }
        for i in invoices
        if i.balance_minor > 0
    ]
    return {
        **_clinic_header(clinic),
        "patient": patient,
        "issued_on": clock.today(zone),
        "open_invoices": open_invoices,
        "activity": activity,
        "owing": money(owing),
        "credit": money(credit),
        "net": money(owing - credit),
    }


def statement_pdf(patient) -> bytes:
    return _pdf("billing/statement_pdf.html", statement_context(patient))


def statement_filename(patient) -> str:
    return f"statement-{patient.last_name}-{patient.first_name}-{patient.pk}.pdf".replace(" ", "-")
