"""Memberships in the JSON API (SPEC 6, 9.7, 11): sell, read (terms, cycles, next billing date),
cancel (with the policy warning), pause/resume, change the payment, refund a cycle; and a
patient's own (or a dependant's) cancel/pause/resume within the membership's policy. A membership
is a pass, so these live at its address, `/passes/{id}/…` (`/me/passes/{id}/…`), and a cycle at
its pass invoice's, `/pass-invoices/{id}/…`; `DELETE /passes/{id}` (carnet.passes.api) deletes
either kind.

Every POST accepts `Idempotency-Key` (core.middleware replays the first response), so a retried
sale sells once and charges once. Selling an automatic membership charges the due cycle at once
(`pass_charge_due`) and the response says how it went (`charge`); note that with an
Idempotency-Key the middleware holds one transaction over the whole request, the charge
included: the cycle's own gateway key keeps a retry from charging twice either way.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from ninja import Router, Status

from carnet.clinic.models import Location
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import NotAllowed, NotFound
from carnet.core.idempotency import calls_gateway, once_per_key, request_key
from carnet.core.moved import moved
from carnet.core.permissions import Action, require
from carnet.core.schemas import one_in_body  # an id in a body: unknown is a 422 naming the field
from carnet.gateway.models import CardOnFile
from carnet.passes.charging import pass_charge_due
from carnet.passes.cycles import billed_cycles, cycle_start
from carnet.passes.dunning import cycle_state
from carnet.passes.models import Pass, PassInvoice, PassPlanChange, PassTemplate
from carnet.people.models import StaffMember
from carnet.people.selectors import patient_for, patient_get, patients_managed_by

from . import card_requests
from . import plan_change as pc
from . import schemas as s
from . import services as ms
from .online import first_charge_outcome
from .overdue import membership_past_due_override, overdue_state
from .retry import membership_retry_now
from .views import membership_summary
from .writeoff import cycle_write_off

router = Router(tags=["memberships"])

_MEMBERSHIPS = Pass.objects.filter(kind=Pass.Kind.MEMBERSHIP).select_related("patient", "card")


def _invoice_status(row: PassInvoice) -> str:
    invoice = row.invoice
    if invoice is None:
        return "not_invoiced"
    if invoice.deleted_at:
        return "deleted"
    if invoice.applied_minor >= invoice.total_minor:
        return "paid"
    return "partly_paid" if invoice.applied_minor else "unpaid"


def _cycle(row: PassInvoice, today: dt.date) -> dict:
    invoice = row.invoice if row.invoice_id and not row.invoice.deleted_at else None
    state = cycle_state(row, today=today)
    return {
        "id": row.pk,
        "seq": row.seq,
        "period_start": row.period_start,
        "last_day": row.period_end - dt.timedelta(days=1),
        "due_on": row.due_on,
        "amount_minor": invoice.total_minor if invoice else row.amount_minor,
        "skipped": row.skipped,
        "invoice_id": row.invoice_id,
        "invoice_status": _invoice_status(row),
        "paid_minor": invoice.applied_minor if invoice else 0,
        "balance_minor": max(invoice.balance_minor, 0) if invoice else 0,
        "uses_allowed": row.uses_allowed,
        "used_count": row.used_count,
        "charge_attempts": row.charge_attempts,
        "next_attempt_on": row.next_attempt_on,
        "last_error": row.last_error,
        "billing_state": state.code if state else "not_invoiced",
        "billing_label": state.label if state else "",
        "decline_kind": row.decline_kind,
        "needs_new_card": row.needs_new_card,
        "written_off_at": row.written_off_at,
    }


def membership_out(pk: int, **extra) -> dict:
    sold = _MEMBERSHIPS.get(pk=pk)
    summary = membership_summary(sold)
    uses = summary["uses"]
    pause = sold.pauses.filter(resumed_at__isnull=True).first()
    fields = (
        "id",
        "kind",
        "name",
        "template_id",
        "patient_id",
        "status",
        "sold_online",
        "purchase_date",
        "start_date",
        "cycle",
        "cycle_price_minor",
        "term_cycles",
        "cancellable_after_cycles",
        "uses_per_cycle",
        "rollover",
        "rollover_cap",
        "pause_allowed",
        "pause_max_cycles",
        "freeze_fee_kind",
        "freeze_fee_minor",
        "self_cancel",
        "payment_mode",
        "card_id",
        "location_id",
        "sold_by_id",
        "ends_after",
    )
    return {
        **{f: getattr(sold, f) for f in fields},
        "patient_name": sold.patient.full_name,
        "billed_cycles": billed_cycles(sold),
        "paused": pause is not None,
        "paused_until": cycle_start(sold, pause.from_seq - 1 + pause.cycles) if pause else None,
        "next_billing_date": summary["next_billing"],
        "owing_minor": summary["owing_minor"],
        "uses_this_cycle": {k: uses[k] for k in ("state", "used", "allowed", "left", "rolled")},
        "past_due": overdue_state(sold),
        "cycles": [
            _cycle(r, summary["today"])
            for r in sold.pass_invoices.select_related("invoice").order_by("seq")
        ],
        **extra,
    }


def _membership(request, pk: int, *, action: Action = Action.INVOICE_VIEW) -> Pass:
    """A membership `request.auth` may see: staff allowed `action`; a patient only their own and
    their dependants' (any other is "not found", so ids cannot be probed)."""
    sold, missing = (
        _MEMBERSHIPS.filter(pk=pk).first(),
        NotFound(f"No membership with id {pk}.", code="membership_not_found"),
    )
    if sold is None:
        raise missing
    patient_for(request.auth, sold.patient_id, action=action, not_found=missing)
    return sold


def _row(request, pk: int, action: Action) -> PassInvoice:
    row = (
        PassInvoice.objects.filter(pk=pk, sold_pass__kind=Pass.Kind.MEMBERSHIP)
        .exclude(sold_pass__status=Pass.Status.DELETED)
        .select_related("invoice", "sold_pass")
        .first()
    )
    missing = NotFound(f"No membership cycle with id {pk}.", code="cycle_not_found")
    if row is None:
        raise missing
    patient_for(request.auth, row.sold_pass.patient_id, action=action, not_found=missing)
    return row


def _charge(sold: Pass) -> dict:
    """Charge the due cycle of an automatic membership now, as the staff page does."""
    if sold.payment_mode != Pass.PaymentMode.AUTOMATIC:
        return {
            "outcome": "none",
            "message": "Paid by hand at the desk: nothing is charged automatically.",
        }
    return first_charge_outcome(sold, pass_charge_due(sold_pass=sold))


def _automatic_needs_key(request, payment_mode: str) -> str | None:
    return request_key(
        request,
        required=payment_mode == Pass.PaymentMode.AUTOMATIC,
        why="in automatic mode the cycle that is due is charged to the card at once.",
    )


def _automatic(request, body, kwargs) -> bool:
    return body.get("payment_mode") == Pass.PaymentMode.AUTOMATIC


def _keyed(request, key: str | None, scope: str, write) -> int:
    """The write (it returns a pk) in its own transaction, once per Idempotency-Key: the endpoint
    then charges outside any transaction, and a retry of the request finds the first write."""
    with transaction.atomic():
        if key is None:
            return write()
        return once_per_key(scope=f"{scope}:{request.auth.pk}", key=key, make=write)


# ---------------------------------------------------------------- staff


@router.post(
    "/patients/{pk}/memberships",
    response={201: s.MembershipSoldOut},
    operation_id="membership_sell",
    summary="Sell a membership; an automatic one's due cycle is charged at once (see `charge`)",
)
@calls_gateway(_automatic)
def sell(request, pk: int, payload: s.MembershipSellIn):
    require(request.auth, Action.SELL)
    key = _automatic_needs_key(request, payload.payment_mode)
    patient = patient_get(pk)
    template = one_in_body(PassTemplate, payload.template_id, "template_id", "membership template")
    sold_pk = _keyed(
        request,
        key,
        "membership-sell",
        lambda: (
            ms.membership_sell(
                actor=request.auth,
                patient=patient,
                template=template,
                start_date=payload.start_date,
                payment_mode=payload.payment_mode,
                card=one_in_body(CardOnFile, payload.card_id, "card_id", "card on file"),
                location=one_in_body(Location, payload.location_id, "location_id", "location"),
                sold_by=one_in_body(StaffMember, payload.sold_by_id, "sold_by_id", "staff member"),
                intro_override=payload.intro_override,
            ).pk
        ),
    )
    return Status(201, membership_out(sold_pk, charge=_charge(Pass.objects.get(pk=sold_pk))))


@router.get(
    "/passes/{pk}/membership",
    response=s.MembershipOut,
    operation_id="pass_membership_read",
    summary="A membership: its terms, cycles (invoice, status, uses) and next billing date",
)
def read(request, pk: int):
    return membership_out(_membership(request, pk).pk)


@router.post(
    "/passes/{pk}/cancel",
    response=s.MembershipCancelledOut,
    operation_id="membership_cancel",
    summary="Cancel at the current cycle's end (default) or today; `warning` is the policy's",
)
def cancel(request, pk: int, payload: s.MembershipCancelIn | None = None):
    require(request.auth, Action.SELL)
    sold = _membership(request, pk, action=Action.SELL)
    done = ms.membership_cancel(
        actor=request.auth, sold_pass=sold, at_cycle_end=payload.at_cycle_end if payload else True
    )
    return membership_out(pk, warning=ms.cancel_warning(done))


@router.post(
    "/passes/{pk}/pause",
    response=s.MembershipOut,
    operation_id="membership_pause",
    summary="Pause for some cycles: they are not billed and the end moves out",
)
def pause(request, pk: int, payload: s.MembershipPauseIn):
    require(request.auth, Action.SELL)
    ms.membership_pause(
        actor=request.auth,
        sold_pass=_membership(request, pk, action=Action.SELL),
        cycles=payload.cycles,
    )
    return membership_out(pk)


@router.post(
    "/passes/{pk}/resume",
    response=s.MembershipOut,
    operation_id="membership_resume",
    summary="End a pause early: the next cycles are billed again",
)
def resume(request, pk: int):
    require(request.auth, Action.SELL)
    ms.membership_resume(actor=request.auth, sold_pass=_membership(request, pk, action=Action.SELL))
    return membership_out(pk)


@router.post(
    "/passes/{pk}/payment",
    response=s.MembershipSoldOut,
    operation_id="membership_payment_set",
    summary=(
        "Change the payment mode or card; an unpaid current cycle is charged to the new card at "
        "once"
    ),
)
@calls_gateway(_automatic)
def payment(request, pk: int, payload: s.MembershipPaymentIn):
    require(request.auth, Action.SELL)
    key = _automatic_needs_key(request, payload.payment_mode)
    sold = _membership(request, pk, action=Action.SELL)
    _keyed(
        request,
        key,
        "membership-payment",
        lambda: (
            ms.membership_payment_set(
                actor=request.auth,
                sold_pass=sold,
                payment_mode=payload.payment_mode,
                card=one_in_body(CardOnFile, payload.card_id, "card_id", "card on file"),
            ).pk
        ),
    )
    return membership_out(pk, charge=_charge(Pass.objects.get(pk=pk)))


def _plan_now(request, body, kwargs) -> bool:
    return body.get("when", "now") == "now"


@router.get(
    "/passes/{pk}/plan-change-preview",
    response=s.PlanChangePreviewOut,
    operation_id="membership_plan_change_preview",
    summary=(
        "What changing the plan would do today: credit, charge, uses carried or reset (writes "
        "nothing)"
    ),
)
def plan_change_preview(request, pk: int, template_id: int, when: str = "now"):
    require(request.auth, Action.SELL)
    sold = _membership(request, pk, action=Action.SELL)
    p = pc.plan_change_preview(
        actor=request.auth,
        sold_pass=sold,
        when=when,
        template=one_in_body(PassTemplate, template_id, "template_id", "membership template"),
    )
    return {**p.as_dict(), "lines": pc.preview_lines(p, clinic_get().money)}


@router.post(
    "/passes/{pk}/plan-change",
    response=s.MembershipPlanChangedOut,
    operation_id="membership_plan_change",
    summary=(
        "Change the plan at once (as previewed; what is due is charged to an automatic "
        "membership's card) or at the next cycle"
    ),
)
@calls_gateway(_plan_now)
def plan_change(request, pk: int, payload: s.PlanChangeIn):
    require(request.auth, Action.SELL)
    sold = _membership(request, pk, action=Action.SELL)
    key = request_key(
        request,
        required=payload.when == "now" and sold.payment_mode == Pass.PaymentMode.AUTOMATIC,
        why="what the change leaves due is charged to the membership's card at once.",
    )
    template = one_in_body(PassTemplate, payload.template_id, "template_id", "membership template")
    expected = {
        k: v
        for k, v in (
            ("credit_minor", payload.expected_credit_minor),
            ("charge_minor", payload.expected_charge_minor),
        )
        if v is not None
    }
    change_pk = _keyed(
        request,
        key,
        "membership-plan-change",
        lambda: (
            pc.membership_plan_change(
                actor=request.auth,
                sold_pass=sold,
                template=template,
                when=payload.when,
                expected=expected,
            ).pk
        ),
    )
    change = PassPlanChange.objects.get(pk=change_pk)
    out = {
        f: getattr(change, f)
        for f in (
            "id",
            "status",
            "effective_on",
            "from_name",
            "to_name",
            "credit_minor",
            "charge_minor",
            "credit_applied_minor",
            "uses",
        )
    }
    return membership_out(pk, plan_change=out, charge=_charge(Pass.objects.get(pk=pk)))


@router.get(
    "/pass-invoices/{pk}/refund-suggestion",
    response=s.CycleRefundSuggestionOut,
    operation_id="membership_cycle_refund_suggestion",
    summary="The suggested refund of a cycle (its price ÷ uses × unused uses), within what was "
    "collected",
)
def refund_suggestion(request, pk: int):
    require(request.auth, Action.REFUND)
    return ms.cycle_refund_suggestion(_row(request, pk, Action.REFUND))


@router.post(
    "/pass-invoices/{pk}/refund",
    response=s.MembershipOut,
    operation_id="membership_cycle_refund",
    summary="Refund a cycle: the amount becomes credit and the cycle's unused uses end",
)
def refund(request, pk: int, payload: s.CycleRefundIn):
    require(request.auth, Action.REFUND)
    row = _row(request, pk, Action.REFUND)
    ms.cycle_refund(
        actor=request.auth, row=row, amount_minor=payload.amount_minor, reason=payload.reason
    )
    return membership_out(row.sold_pass_id)


@router.post(
    "/pass-invoices/{pk}/write-off",
    response=s.MembershipOut,
    operation_id="membership_cycle_write_off",
    summary="Write off what a cycle still owes: no uses left, never charged again",
)
def write_off(request, pk: int, payload: s.CycleWriteOffIn):
    require(request.auth, Action.REFUND)
    row = _row(request, pk, Action.REFUND)
    cycle_write_off(actor=request.auth, row=row, reason=payload.reason)
    return membership_out(row.sold_pass_id)


@router.post(
    "/passes/{pk}/past-due-override",
    response=s.MembershipOut,
    operation_id="membership_past_due_override",
    summary=(
        "Let a past-due membership cover new bookings again until a date (at most 31 days; logged)"
    ),
)
def past_due_override(request, pk: int, payload: s.PastDueOverrideIn):
    require(request.auth, Action.SELL)
    sold = _membership(request, pk, action=Action.SELL)
    membership_past_due_override(actor=request.auth, sold_pass=sold, until=payload.until)
    return membership_out(pk)


@router.post(
    "/passes/{pk}/retry-now",
    response=s.RetryNowOut,
    operation_id="membership_retry_now",
    summary="Charge the card on file now for what a past-due membership owes",
)
@calls_gateway()
def retry_now(request, pk: int):
    require(request.auth, Action.PAYMENT_TAKE)
    sold = _membership(request, pk, action=Action.PAYMENT_TAKE)
    run = membership_retry_now(actor=request.auth, sold_pass=sold)
    outcome = (
        "charged"
        if run.charged and not run.declined
        else "declined"
        if run.declined
        else "unavailable"
    )
    return {"outcome": outcome, "membership": membership_out(pk)}


# ---------------------------------------------------------------- the patient's own (SPEC 11)


def _mine(request, pk: int) -> Pass:
    me = getattr(request.auth, "patient", None)
    if me is None:
        raise NotAllowed("Only patients manage their own memberships here; staff use /passes/{id}.")
    sold = (
        _MEMBERSHIPS.filter(pk=pk, patient__in=patients_managed_by(me))
        .exclude(status=Pass.Status.DELETED)
        .first()
    )
    if sold is None:
        raise NotFound(f"No membership with id {pk}.", code="membership_not_found")
    return sold


@router.post(
    "/me/passes/{pk}/cancel",
    response=s.MembershipCancelledOut,
    operation_id="my_membership_cancel",
    summary=(
        "Cancel one's own (or a dependant's) membership, if it allows that and is past its policy"
    ),
)
def my_cancel(request, pk: int, payload: s.MembershipCancelIn | None = None):
    done = ms.membership_cancel(
        actor=request.auth,
        sold_pass=_mine(request, pk),
        by_patient=True,
        at_cycle_end=payload.at_cycle_end if payload else True,
    )
    return membership_out(pk, warning=ms.cancel_warning(done))


@router.post(
    "/me/passes/{pk}/pause",
    response=s.MembershipOut,
    operation_id="my_membership_pause",
    summary="Pause one's own (or a dependant's) membership, if it allows pauses",
)
def my_pause(request, pk: int, payload: s.MembershipPauseIn):
    ms.membership_pause(
        actor=request.auth,
        sold_pass=_mine(request, pk),
        cycles=payload.cycles,
        by_patient=True,
        fee_shown=payload.freeze_fee_minor,
    )
    return membership_out(pk)


@router.post(
    "/me/passes/{pk}/resume",
    response=s.MembershipOut,
    operation_id="my_membership_resume",
    summary="Resume one's own (or a dependant's) paused membership",
)
def my_resume(request, pk: int):
    ms.membership_resume(actor=request.auth, sold_pass=_mine(request, pk), by_patient=True)
    return membership_out(pk)


@router.post(
    "/passes/{pk}/card-update-request",
    response={202: s.CardUpdateRequestOut},
    operation_id="membership_card_update_request",
    summary=(
        "Email the patient a signed link to add a new card; it pays the membership and what is "
        "owed is charged at once"
    ),
)
def card_update_request(request, pk: int):
    require(request.auth, Action.SELL)
    sold = _membership(request, pk, action=Action.SELL)
    req = card_requests.card_update_request(
        sold_pass=sold, actor=request.auth, base_url=request.build_absolute_uri("/")
    )
    return Status(
        202,
        {
            "id": req.pk,
            "membership_id": sold.pk,
            "emailed_to": req.emailed_to,
            "created_at": req.created_at,
            "expires_at": req.expires_at,
            "label": card_requests.card_request_label(req),
        },
    )


# ---------------------------------------------------------------- the addresses before issue 24

# A membership is a pass (README glossary): what acts on one lives at /passes/{id} (DELETE
# /passes/{id}, in carnet.passes.api, deletes either kind), and a cycle is a pass invoice. Each
# old address answers 308 to the new one for one release (CHANGELOG.md).
_MOVED = (
    ("GET", "/memberships/{pk}", "/passes/{pk}/membership"),
    ("GET", "/memberships/{pk}/plan-change-preview", "/passes/{pk}/plan-change-preview"),
    *(
        ("POST", f"/memberships/{{pk}}/{action}", f"/passes/{{pk}}/{action}")
        for action in (
            "cancel",
            "pause",
            "resume",
            "payment",
            "plan-change",
            "past-due-override",
            "retry-now",
            "card-update-request",
        )
    ),
    *(
        ("POST", f"/me/memberships/{{pk}}/{action}", f"/me/passes/{{pk}}/{action}")
        for action in ("cancel", "pause", "resume")
    ),
    ("GET", "/memberships/cycles/{pk}/refund-suggestion", "/pass-invoices/{pk}/refund-suggestion"),
    ("POST", "/memberships/cycles/{pk}/refund", "/pass-invoices/{pk}/refund"),
    ("POST", "/memberships/cycles/{pk}/write-off", "/pass-invoices/{pk}/write-off"),
)


def _moved_to(old: str, new: str):
    def redirect(request, pk: int):
        return moved(request, old.format(pk=pk), new.format(pk=pk))

    return redirect


for _method, _old, _new in _MOVED:
    router.add_api_operation(_old, [_method], _moved_to(_old, _new), include_in_schema=False)


@router.delete("/memberships/{pk}", include_in_schema=False)
def delete_moved(request, pk: int):
    """DELETE /memberships/{id} refused anything but a membership, and DELETE /passes/{id} deletes
    a package too: the old address keeps its refusals and redirects only a membership."""
    require(request.auth, Action.INVOICE_DELETE)
    _membership(request, pk, action=Action.INVOICE_DELETE)
    return moved(request, f"/memberships/{pk}", f"/passes/{pk}")
