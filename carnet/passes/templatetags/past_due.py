"""{% past_due_alerts patient_ids %}: the front desk's alert for past-due memberships (issue 22
point 4), on the patient's profile and the appointment panel: what is owed and since when, the last
decline, the next retry, with "Retry now" and "Take another payment". Shown to staff who may see
invoices; the buttons to those who may take payments."""

from django import template

from carnet.core.idempotency import new_form_key
from carnet.passes.memberships.overdue import past_due_memberships

register = template.Library()


@register.inclusion_tag("passes/_past_due_alerts.html", takes_context=True)
def past_due_alerts(context, who, compact=False, requests_shown=False):
    """`who`: a patient, or the appointment's visits (each with a patient_id). `requests_shown`:
    the page lists the open card update requests itself (the profile), so the alert does not."""

    patient_ids = [who.pk] if hasattr(who, "full_name") else sorted({r.patient_id for r in who})
    allowed = context.get("allowed") or {}
    request = context.get("request")
    rows = past_due_memberships(patient_ids=patient_ids) if allowed.get("invoice_view") else []
    return {
        "rows": rows,
        "allowed": allowed,
        "compact": compact,
        "requests_shown": requests_shown,
        "csrf_token": context.get("csrf_token"),
        "form_key": new_form_key(),  # a double click on Retry now tries the card once
        "next": request.get_full_path() if request is not None else "",
    }
