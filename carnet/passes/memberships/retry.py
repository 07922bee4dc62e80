"""“Retry now” (issue 22 point 4): the front desk charges a past-due membership's card at once,
through the same path as the daily job (passes.charging: a card attempt recorded, the gateway
called outside any transaction, the outcome recorded; a decline counted and scheduled by
dunning). Call it outside any transaction."""

from __future__ import annotations

from carnet.clinic.selectors import clinic_today
from carnet.core import activity
from carnet.core.errors import Conflict
from carnet.core.permissions import Action, require
from carnet.passes.charging import Run, pass_charge_due
from carnet.passes.dunning import OWED
from carnet.passes.models import Pass, PassInvoice


def membership_retry_now(*, actor, sold_pass: Pass) -> Run:
    """Try the card on file now for every cycle this membership still owes (not written off)."""
    require(actor, Action.PAYMENT_TAKE)
    sold = Pass.objects.select_related("card").get(pk=sold_pass.pk)
    if sold.kind != Pass.Kind.MEMBERSHIP or sold.status != Pass.Status.ACTIVE:
        raise Conflict(
            f"{sold.name} is not an active membership; take the payment on the Billing tab.",
            code="not_active",
        )
    if sold.card_id is None or sold.card.removed_at:
        raise Conflict(
            f"{sold.name} has no card on file to charge. Take another payment, or choose a card "
            "(Change card or payment mode).",
            code="no_card",
        )
    today = clinic_today()
    owed = PassInvoice.objects.filter(
        OWED, sold_pass=sold, written_off_at__isnull=True, due_on__lte=today
    )
    if not owed.update(next_attempt_on=today):
        raise Conflict(
            f"{sold.name} owes nothing past due; there is nothing to retry.", code="nothing_owed"
        )
    activity.record(actor=actor, verb="card retried now", obj=sold, after={"on": today.isoformat()})
    return pass_charge_due(sold_pass=sold, today=today)  # a decline counts as one more try
