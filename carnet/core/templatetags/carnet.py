"""Template filters: status labels. (`money` is the clinic's:
clinic/templatetags/clinic_money.py.)"""

from django import template

register = template.Library()

STATUS_LABELS = {
    "paid": "Paid",
    "unpaid": "Unpaid",
    "partially_paid": "Part paid",
    "no_charge": "No charge",
    "deleted": "Deleted",
}


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())
