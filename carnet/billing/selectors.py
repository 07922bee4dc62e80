from django.db.models import F, QuerySet, Sum

from carnet.core.errors import NotFound, ValidationFailed

from .models import Invoice, Payment


def invoices_for_patient(patient) -> QuerySet[Invoice]:
    return Invoice.objects.filter(patient=patient).prefetch_related("lines")


def payments_for_patient(patient) -> QuerySet[Payment]:
    return Payment.objects.filter(patient=patient).prefetch_related(
        "allocations__invoice", "refunds"
    )


def payments_in_detail() -> QuerySet[Payment]:
    """Payments with their allocations and refunds, as the API answers them."""
    return Payment.objects.prefetch_related("allocations", "refunds")


def allocations_for(*, patient, items) -> list[tuple[Invoice, int]]:
    """`items` (each with `invoice_id` and `amount_minor`) as (invoice, amount) pairs: every
    invoice must be this patient's, else a 422 naming the allocations."""
    found = {
        inv.pk: inv
        for inv in Invoice.objects.filter(pk__in=[a.invoice_id for a in items], patient=patient)
    }
    missing = [a.invoice_id for a in items if a.invoice_id not in found]
    if missing:
        raise ValidationFailed(
            f"No invoice with id {missing[0]} for this patient.",
            fields={"allocations": [f"Unknown invoice {missing[0]}."]},
        )
    return [(found[a.invoice_id], a.amount_minor) for a in items]


def credit_balance(patient) -> int:
    """Account credit: what the patient paid and is neither applied nor refunded."""
    totals = Payment.objects.filter(patient=patient).aggregate(
        amount=Sum("amount_minor"),
        applied=Sum("applied_minor"),
        refunded=Sum("refunded_minor"),
        gift_card=Sum("gift_card_minor"),
    )
    return (
        (totals["amount"] or 0)
        - (totals["applied"] or 0)
        - (totals["refunded"] or 0)
        - (totals["gift_card"] or 0)
    )


def amount_owing(patient) -> int:
    totals = Invoice.objects.filter(patient=patient, deleted_at__isnull=True).aggregate(
        total=Sum("total_minor"), applied=Sum("applied_minor")
    )
    return (totals["total"] or 0) - (totals["applied"] or 0)


def invoice_get(pk: int) -> Invoice:
    invoice = Invoice.objects.select_related("patient", "location").filter(pk=pk).first()
    if invoice is None:
        raise NotFound(f"No invoice with id {pk}.")
    return invoice


def open_invoices(patient) -> QuerySet[Invoice]:
    """The patient's invoices with something left to pay, oldest first."""
    return Invoice.objects.filter(
        patient=patient, deleted_at__isnull=True, applied_minor__lt=F("total_minor")
    ).order_by("number")


def patients_owing(*, patient_ids: list[int] | None = None, limit: int = 10) -> list[dict]:
    """Patients with unpaid invoices, most owed first: {patient_id, first_name, last_name,
    owing_minor}. `patient_ids` narrows it (e.g. today's patients). One grouped query."""
    qs = Invoice.objects.filter(deleted_at__isnull=True, applied_minor__lt=F("total_minor"))
    if patient_ids is not None:
        qs = qs.filter(patient_id__in=patient_ids)
    rows = (
        qs.values("patient_id", "patient__first_name", "patient__last_name")
        .annotate(owing_minor=Sum(F("total_minor") - F("applied_minor")))
        .order_by("-owing_minor", "patient_id")
    )
    return [
        {
            "patient_id": r["patient_id"],
            "first_name": r["patient__first_name"],
            "last_name": r["patient__last_name"],
            "owing_minor": r["owing_minor"],
        }
        for r in rows[:limit]
    ]
