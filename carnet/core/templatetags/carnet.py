"""Template filters: {{ amount_minor|money }} in the clinic's currency, status labels."""

from django import template

from carnet.clinic.selectors import clinic_currency
from carnet.core.money import Money

register = template.Library()

STATUS_LABELS = {
    "paid": "Paid",
    "unpaid": "Unpaid",
    "partially_paid": "Part paid",
    "no_charge": "No charge",
    "deleted": "Deleted",
}


@register.filter
def money(minor) -> str:
    if minor in (None, ""):
        return ""
    return Money(int(minor), clinic_currency()).format()


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())
