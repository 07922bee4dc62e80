"""Changing a member's plan (issue 22 point 6): move a membership to another membership template,
at once or from the next cycle, after a preview of what it does to the money and the uses.

At once, with the clinic's proration setting "prorate":
- the current cycle ends today: the unused days come off its invoice (a negative line, tax
  included, out of deferred revenue – memberships and A/R; what of it was already paid becomes the
  patient's credit), and the rest of its fee is earned now, in its own income category;
- the new plan's cycle starts today: on the same cycle length it runs to the old cycle's end and
  costs the new price × the days left ÷ the cycle's days, the uses taken this cycle counting
  against the new plan's allowance ("carried"); on another cycle length a full new cycle starts
  today at the new price with a fresh allowance ("reset"), and the cycles count from today;
- its invoice is issued at once (A/R, deferred revenue – memberships, tax) and the credit freed
  above pays it first; an automatic membership's card is charged for the rest through the usual
  card attempt, outside any transaction (`pass_charge_due`), by the page or endpoint after commit.
At once without proration, the current cycle keeps its invoice and takes the new plan's terms and
allowance (carried); the new price is billed from the next cycle. At the next cycle nothing is
prorated: the change is scheduled and the daily job applies it on the day the next cycle starts,
before it is invoiced (the new plan's allowance starts then: "reset").

The preview (`plan_change_preview`) is the same computation as the change, so its numbers are
what is posted; the change refuses if they moved since the preview was shown (e.g. midnight
passed). Every step is logged on the membership and kept as a PassPlanChange row (its history).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from django.db import transaction
from django.db.models import F, Q

from carnet.billing.invoicing import invoice_take_back
from carnet.billing.locks import lock_invoices
from carnet.billing.models import InvoiceLine
from carnet.billing.payments import credit_apply
from carnet.billing.tax import line_amounts
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post
from carnet.passes.cycles import cycle_add, cycle_earned_minor, cycle_start
from carnet.passes.invoicing import pass_invoice_issue
from carnet.passes.locks import lock_pass
from carnet.passes.models import (
    Pass,
    PassInvoice,
    PassItem,
    PassPlanChange,
    PassTemplate,
    Redemption,
)
from carnet.passes.redeeming.redemption import redemption_void
from carnet.passes.terms import EXPIRY_TERMS, items_copy, pass_terms

from .services import membership_check_active, membership_cycles_retime, uses_place

When = PassPlanChange.When
PRORATE, NO_PRORATION = "prorate", "none"


@dataclass(frozen=True)
class Preview:
    """What a plan change does, in the clinic's currency's minor units (tax included)."""

    when: str
    effective_on: dt.date
    from_name: str
    to_name: str
    proration: str  # "prorate" or "none" (always "none" at the next cycle)
    credit_minor: int = 0  # comes off the current cycle's invoice
    credit_days: int = 0  # the unused days it is for
    cycle_days: int = 0  # of the current cycle
    credit_to_account_minor: int = (
        0  # of the credit, what was paid: it becomes the patient's credit
    )
    charge_minor: int = 0  # the new plan's invoice
    charge_unit_minor: int = 0  # its line price, before any tax added on top
    charge_start: dt.date | None = None
    charge_last_day: dt.date | None = None
    credit_applied_minor: int = (
        0  # of the patient's credit from this change, applied to that invoice
    )
    due_now_minor: int = 0  # what is left to pay on it
    uses: str = "reset"  # "carried": the uses taken this cycle count against the new allowance
    uses_left: int | None = None  # in the new plan's first cycle; None = unlimited
    next_billing: dt.date | None = None
    next_price_minor: int = 0  # the new plan's cycle price (line price)
    automatic: bool = False

    def as_dict(self) -> dict:
        return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in asdict(self).items()}


def _current(sold: Pass, today: dt.date) -> PassInvoice | None:
    return (
        sold.pass_invoices.select_related("invoice")
        .filter(period_start__lte=today, period_end__gt=today, skipped=False)
        .first()
    )


def _check(sold: Pass, template: PassTemplate, when: str) -> None:
    membership_check_active(sold, "changed")
    if when not in When.values:
        raise ValidationFailed(
            "Choose when the change applies: at once or at the next cycle.",
            fields={"when": ["Choose now or next_cycle."]},
        )
    if template.kind != PassTemplate.Kind.MEMBERSHIP:
        raise ValidationFailed(
            f"{template} is not a membership.", fields={"template_id": ["Not a membership."]}
        )
    if template.archived:
        raise Conflict(f"{template} is archived; it is no longer sold.", code="template_archived")
    if template.pk == sold.template_id:
        raise Conflict(
            f"{sold.name} is already on {template}; choose another plan.", code="same_plan"
        )
    if not template.items.exists():
        raise ValidationFailed(
            f"{template} has no eligible items; add some in Settings first.",
            fields={"template_id": ["No eligible items."]},
        )
    if sold.ends_after is not None:
        raise Conflict(
            f"{sold.name} is cancelled and ends on {sold.ends_after:%Y-%m-%d}; sell {template} "
            "instead of changing it.",
            code="pass_ending",
        )
    if sold.pauses.filter(resumed_at__isnull=True).exists():
        raise Conflict(f"{sold.name} is paused; resume it before changing its plan.", code="paused")
    scheduled = sold.plan_changes.filter(status=PassPlanChange.Status.SCHEDULED).first()
    if scheduled is not None:
        raise Conflict(
            f"A change to {scheduled.to_name} is already scheduled for "
            f"{scheduled.effective_on:%Y-%m-%d}; cancel it first.",
            code="change_scheduled",
        )


def _stays(row: PassInvoice, today: dt.date):
    """The current cycle's uses that stay in it: used already, or booked before today."""
    return row.redemptions.filter(
        Q(status=Redemption.Status.POSTED)
        | Q(status=Redemption.Status.RESERVED, visit_date__lt=today)
    )


def _compute(
    sold: Pass, template: PassTemplate, when: str, today: dt.date, proration: str
) -> Preview:
    currency = clinic_get().currency
    row = _current(sold, today)
    base = {
        "from_name": sold.name,
        "to_name": template.name,
        "next_price_minor": template.price_minor,
        "automatic": sold.payment_mode == Pass.PaymentMode.AUTOMATIC and sold.card_id is not None,
    }
    new_uses = template.uses_per_cycle
    if row is None or row.invoice_id is None or row.invoice.deleted_at:
        # No invoiced cycle running (not started yet): the new plan applies from the
        # next invoice, unprorated.
        return Preview(
            when=When.NOW,
            effective_on=today,
            proration=NO_PRORATION,
            uses="reset",
            uses_left=new_uses,
            next_billing=row.period_start if row else max(sold.start_date, today),
            **base,
        )
    if when == When.NEXT_CYCLE:
        return Preview(
            when=when,
            effective_on=row.period_end,
            proration=NO_PRORATION,
            uses="reset",
            uses_left=new_uses,
            next_billing=row.period_end,
            **base,
        )
    if proration != PRORATE:
        left = None if new_uses is None else max(new_uses - row.used_count, 0)
        return Preview(
            when=when,
            effective_on=today,
            proration=NO_PRORATION,
            uses="carried",
            uses_left=left,
            next_billing=row.period_end,
            **base,
        )
    return _prorated(sold, template, row, when, today, currency=currency, base=base)


def _prorated(
    sold: Pass, template: PassTemplate, row, when: str, today: dt.date, *, currency, base
) -> Preview:
    """A change now, prorated: the unused days of the current cycle back as credit (what was paid
    beyond the rest goes to the account), and the new plan charged from today — to the cycle's end
    on the same cycle length (uses carried), or for a whole new cycle (uses reset)."""
    invoice, new_uses = row.invoice, template.uses_per_cycle
    if invoice.lines.filter(kind=InvoiceLine.Kind.PASS_CREDIT).exists():
        raise Conflict(
            f"The current cycle of {sold.name} was refunded or credited already; change the plan "
            "at the next cycle instead.",
            code="cycle_credited",
        )
    days, unused = (row.period_end - row.period_start).days, (row.period_end - today).days
    credit = min(row.amount_minor * unused // days, invoice.total_minor)
    to_account = max(0, invoice.applied_minor - (invoice.total_minor - credit))
    if template.cycle == sold.cycle:
        end, unit, uses = row.period_end, template.price_minor * unused // days, "carried"
        left = None if new_uses is None else max(new_uses - _stays(row, today).count(), 0)
    else:
        end, unit, uses, left = (
            cycle_add(template.cycle, today, 1),
            template.price_minor,
            "reset",
            new_uses,
        )
    charge = line_amounts(
        gross=unit,
        rates=[t.rate for t in template.taxes.all()],
        inclusive=template.tax_inclusive,
        currency=currency,
    ).total
    applied = min(to_account, charge)
    return Preview(
        when=when,
        effective_on=today,
        proration=PRORATE,
        credit_minor=credit,
        credit_days=unused,
        cycle_days=days,
        credit_to_account_minor=to_account,
        charge_minor=charge,
        charge_unit_minor=unit,
        charge_start=today,
        charge_last_day=end - dt.timedelta(days=1),
        credit_applied_minor=applied,
        due_now_minor=charge - applied,
        uses=uses,
        uses_left=left,
        next_billing=end,
        **base,
    )


def plan_change_preview(*, actor, sold_pass: Pass, template: PassTemplate, when: str) -> Preview:
    """What changing `sold_pass` to `template` would do today
    (in the clinic's time zone); writes nothing."""
    require(actor, Action.SELL)
    _check(sold_pass, template, when)
    return _compute(sold_pass, template, when, clinic_today(), clinic_get().membership_proration)


def preview_lines(p: Preview, money) -> list[str]:
    """The preview in the clinic's words, one sentence a line
    (the staff page and the API's `lines`)."""
    out = []
    if p.when == When.NEXT_CYCLE:
        out.append(
            f"{p.to_name} replaces {p.from_name} from {p.effective_on:%Y-%m-%d}, "
            "when the next cycle starts: the current cycle is not changed and nothing is "
            "prorated."
        )
    elif p.proration == PRORATE:
        where = (
            f"{money(p.credit_to_account_minor)} of it was paid and becomes account credit"
            if p.credit_to_account_minor
            else "it comes off what is owed on that cycle"
        )
        if p.credit_to_account_minor and p.credit_to_account_minor < p.credit_minor:
            where += f"; {money(p.credit_minor - p.credit_to_account_minor)} comes off what is owed"
        out.append(
            f"Credit for the {p.credit_days} unused day{'s' if p.credit_days != 1 else ''} of "
            f"{p.from_name}'s current cycle ({p.cycle_days} days): {money(p.credit_minor)} — "
            f"{where}."
        )
        out.append(
            f"Charge for {p.to_name} from {p.charge_start:%Y-%m-%d} to "
            f"{p.charge_last_day:%Y-%m-%d}: {money(p.charge_minor)}."
        )
        if p.credit_applied_minor:
            out.append(f"The credit pays {money(p.credit_applied_minor)} of it.")
        pay = "charged to the card on file at once" if p.automatic else "to pay at the desk"
        out.append(f"Due now: {money(p.due_now_minor)}" + (f", {pay}." if p.due_now_minor else "."))
        left_over = p.credit_to_account_minor - p.credit_applied_minor
        if left_over:
            out.append(f"{money(left_over)} stays on the patient's account as credit.")
    else:
        out.append(
            f"{p.to_name} applies at once, with no proration: the current cycle's invoice is not "
            f"changed and the new price is billed from {p.next_billing:%Y-%m-%d}."
        )
    allowance = (
        "unlimited uses"
        if p.uses_left is None
        else f"{p.uses_left} use{'s' if p.uses_left != 1 else ''} left"
    )
    if p.uses == "carried":
        out.append(
            f"Uses are carried: the uses taken in this cycle count against {p.to_name}'s allowance "
            f"({allowance} in this cycle)."
        )
    else:
        out.append(
            f"Uses are reset: {p.to_name}'s first cycle starts with its full allowance "
            f"({allowance})."
        )
    if p.next_billing:
        out.append(
            f"Next billing: {p.next_billing:%Y-%m-%d}, {money(p.next_price_minor)} a cycle "
            "(before tax added on top, if any)."
        )
    return out


# ---- the change ---------------------------------------------------------------------------------


def _earn_to(sold: Pass, today: dt.date, memo: str) -> None:
    """Earn each invoiced cycle's fee up to `today` now, in the membership's current income category
    (before a change moves it to another one)."""
    due_rows, total = [], 0
    for row in sold.pass_invoices.filter(
        invoice__isnull=False, invoice__deleted_at__isnull=True, recognised_minor__lt=F("net_minor")
    ).order_by("seq"):
        due = cycle_earned_minor(row, today) - row.recognised_minor
        if due > 0:
            due_rows.append((row.pk, due))
            total += due
    for pk, due in due_rows:
        PassInvoice.objects.filter(pk=pk).update(recognised_minor=F("recognised_minor") + due)
    if total:
        Pass.objects.filter(pk=sold.pk).update(recognised_minor=F("recognised_minor") + total)
        transaction_post(
            kind="membership_recognised",
            source=sold,
            memo=memo,
            lines=[
                Line(accounts.DEFERRED_MEMBERSHIPS, debit=total),
                Line(accounts.revenue(sold.income_category_id), credit=total),
            ],
        )


def _void_dropped(sold: Pass, template: PassTemplate, from_day: dt.date) -> None:
    """Uses booked from `from_day` on a treatment the new plan does not cover are voided."""
    kept = set(template.items.values_list("treatment_id", flat=True))
    for redemption in (
        sold.redemptions.filter(status=Redemption.Status.RESERVED, visit_date__gte=from_day)
        .exclude(item__treatment_id__in=kept)
        .order_by("pk")
    ):
        redemption_void(redemption)


def _items_sync(sold: Pass, template: PassTemplate) -> None:
    """The membership's eligible items become the new plan's; an item it drops that was used stays
    for the history but takes no more uses (its limit is what it used)."""
    new = {i.treatment_id: i for i in template.items.all()}
    for item in sold.items.all():
        wanted = new.pop(item.treatment_id, None)
        if wanted is not None:
            item.additional_charge_minor, item.compensation_minor = (
                wanted.additional_charge_minor,
                wanted.compensation_minor,
            )
            item.limit = None if wanted.limit is None else max(wanted.limit, item.used_count)
            item.save(update_fields=["additional_charge_minor", "compensation_minor", "limit"])
        elif item.redemptions.exists():
            PassItem.objects.filter(pk=item.pk).update(limit=F("used_count"))
        else:
            item.delete()
    PassItem.objects.bulk_create(items_copy(sold, new.values()))


def _switch_terms(sold: Pass, template: PassTemplate, *, first_seq: int) -> None:
    """The membership takes the new plan's terms (in memory and saved), as a sale copies them
    (passes.terms), but for the expiry terms it was sold with (a plan change is not a sale); its
    term counts the new plan's cycles from `first_seq`."""
    before = sold.pass_invoices.filter(
        seq__lt=first_seq, skipped=False, invoice__isnull=False
    ).count()
    terms = {n: v for n, v in pass_terms(template).items() if n not in EXPIRY_TERMS}
    terms["term_cycles"] = None if template.term_cycles is None else before + template.term_cycles
    for name, value in terms.items():
        setattr(sold, name, value)
    sold.save(
        update_fields=[n.removesuffix("_id") for n in terms] + ["anchor_date", "anchor_index"]
    )
    sold.taxes.set(template.taxes.all())
    _items_sync(sold, template)


def _credit(sold: Pass, row: PassInvoice, p: Preview, memo: str) -> None:
    """The unused days come off the current cycle's invoice;
    the cycle ends today and its fee is earned."""
    today = p.effective_on
    _earn_to(sold, today, memo)
    row.refresh_from_db()
    left = {"deferred": row.net_minor - row.recognised_minor, "from_revenue": 0}

    def counter(net: int) -> list[Line]:
        from_deferred = min(net, left["deferred"])
        left["deferred"] -= from_deferred
        left["from_revenue"] = (
            net - from_deferred
        )  # rounding of the tax split: earned a cent too much
        return [
            Line(accounts.DEFERRED_MEMBERSHIPS, debit=from_deferred),
            Line(accounts.revenue(sold.income_category_id), debit=net - from_deferred),
        ]

    credit_net = 0
    if p.credit_minor:
        line = invoice_take_back(
            invoice=row.invoice,
            amount_minor=p.credit_minor,
            to_credit_minor=p.credit_to_account_minor,
            source=row,
            memo=memo,
            description=f"{p.credit_days} unused days of {sold.name}: changed to {p.to_name}",
            counter_lines=counter,
        )
        credit_net = -line.net_minor
    rest = row.net_minor - credit_net - (row.recognised_minor - left["from_revenue"])
    PassInvoice.objects.filter(pk=row.pk).update(
        period_end=today,
        amount_minor=F("amount_minor") - p.credit_minor,
        net_minor=F("net_minor") - credit_net,
        recognised_minor=F("net_minor") - credit_net,
    )
    Pass.objects.filter(pk=sold.pk).update(
        deferred_minor=F("deferred_minor") - credit_net,
        recognised_minor=F("recognised_minor") - left["from_revenue"] + rest,
    )
    if rest:  # the cycle's days are all before today: what is left of its fee is earned now
        transaction_post(
            kind="membership_recognised",
            source=row,
            memo=memo,
            lines=[
                Line(accounts.DEFERRED_MEMBERSHIPS, debit=rest),
                Line(accounts.revenue(sold.income_category_id), credit=rest),
            ],
        )
    sold.refresh_from_db(fields=["deferred_minor", "recognised_minor"])


def _detach_from(row: PassInvoice, today: dt.date) -> list[Redemption]:
    """The current cycle's bookings from today on leave it (placed again in the
    new plan's cycle)."""
    moving = list(
        row.redemptions.filter(status=Redemption.Status.RESERVED, visit_date__gte=today).order_by(
            "visit_date", "pk"
        )
    )
    if moving:
        Redemption.objects.filter(pk__in=[r.pk for r in moving]).update(cycle=None)
        PassInvoice.objects.filter(pk=row.pk).update(used_count=F("used_count") - len(moving))
    return moving


def _apply_now(*, actor, sold: Pass, template: PassTemplate, p: Preview) -> PassInvoice | None:
    """The change at once; returns the new plan's invoiced cycle when one is charged now."""
    today = p.effective_on
    row = _current(sold, today)
    memo = f"{sold.name} changed to {template.name}"
    _void_dropped(sold, template, today)
    # No invoiced cycle running: the next one is the new plan's.
    if row is None or row.invoice_id is None:
        _switch_from_next(sold, template, today)
        return None
    if p.proration != PRORATE:
        _change_unprorated(sold, template, row, today, memo)
        return None
    _credit(sold, row, p, memo)
    moving = _detach_from(row, today)
    new = _cycle_split(actor, sold, template, row, p, today)
    uses_place(sold, moving)
    # The preview's arithmetic and the invoice's must agree.
    if new.invoice.total_minor != p.charge_minor:
        raise Conflict(
            "The new plan's invoice did not come to the amount previewed; nothing was changed.",
            code="preview_mismatch",
        )
    if p.credit_applied_minor:
        credit_apply(
            actor=actor,
            patient=sold.patient,
            invoice=new.invoice,
            amount_minor=p.credit_applied_minor,
        )
    return new


def _change_unprorated(sold: Pass, template: PassTemplate, row, today: dt.date, memo: str) -> None:
    """A change now without proration: the new plan's terms from the next cycle on, the current one
    keeping its price with the new plan's uses (at least those already taken)."""
    unit_changes = template.cycle != sold.cycle

    def switch():
        if unit_changes:  # the next cycle starts when this one ends, on the new length
            sold.anchor_date, sold.anchor_index = row.period_end, row.seq
        _earn_to(sold, today, memo)
        _switch_terms(sold, template, first_seq=row.seq + 1)
        PassInvoice.objects.filter(pk=row.pk).update(
            uses_allowed=None
            if template.uses_per_cycle is None
            else max(template.uses_per_cycle, row.used_count)
        )

    membership_cycles_retime(sold, row.seq + 1, switch)


def _cycle_split(actor, sold: Pass, template: PassTemplate, row, p: Preview, today: dt.date):
    """A prorated change now: a new cycle of the new plan from today, invoiced (charged by the job
    when the membership pays automatically), the cycles after it moved to follow it."""
    made = {}

    def split():
        # One more row before the next cycle: the grid moves one index.
        if template.cycle == sold.cycle:
            sold.anchor_date = sold.anchor_date or sold.start_date
            sold.anchor_index += 1
        else:  # a new cycle length: cycles count from today
            sold.anchor_date, sold.anchor_index = today, row.seq
        _switch_terms(sold, template, first_seq=row.seq + 1)
        stays = _stays(row, today).count()
        new = PassInvoice(
            sold_pass=sold,
            seq=row.seq + 1,
            due_on=today,
            period_start=today,
            period_end=p.charge_last_day + dt.timedelta(days=1),
            unit_price_minor=p.charge_unit_minor,
            amount_minor=0,
            net_minor=0,
            uses_allowed=(
                None
                if template.uses_per_cycle is None
                else template.uses_per_cycle
                if p.uses == "reset"
                else max(template.uses_per_cycle - stays, 0)
            ),
        )
        new.save(force_insert=True)
        pass_invoice_issue(actor=actor, row=new, action=None, location=sold.location)
        if sold.payment_mode == Pass.PaymentMode.AUTOMATIC and sold.card_id:
            PassInvoice.objects.filter(pk=new.pk).update(next_attempt_on=today)
        made["row"] = new

    membership_cycles_retime(sold, row.seq + 1, split)
    return made["row"]


@transaction.atomic
def membership_plan_change(
    *, actor, sold_pass: Pass, template: PassTemplate, when: str, expected: dict | None = None
) -> PassPlanChange:
    """Change the plan as `plan_change_preview` showed. `expected` (credit_minor, charge_minor and
    effective_on from the preview shown) makes it refuse if the numbers moved since."""
    require(actor, Action.SELL)
    today, proration = clinic_today(), clinic_get().membership_proration
    row = _current(sold_pass, today)
    if row is not None and row.invoice_id:  # the fixed lock order: invoice, then pass
        lock_invoices([row.invoice_id])
    sold = lock_pass(sold_pass.pk)
    _check(sold, template, when)
    p = _compute(sold, template, when, today, proration)
    if expected is not None:
        shown = {k: str(getattr(p, k)) for k in ("credit_minor", "charge_minor", "effective_on")}
        if any(k in expected and str(expected[k]) != v for k, v in shown.items()):
            raise Conflict(
                "The change's numbers moved since the preview (a day passed, or a payment or "
                "booking changed the cycle). Review the new preview and confirm again.",
                code="preview_changed",
            )
    before = activity.snapshot(sold)
    change = PassPlanChange(
        sold_pass=sold,
        from_template_id=sold.template_id,
        to_template=template,
        from_name=sold.name,
        to_name=template.name,
        when=p.when,
        effective_on=p.effective_on,
        proration=p.proration,
        credit_minor=p.credit_minor,
        charge_minor=p.charge_minor,
        credit_applied_minor=p.credit_applied_minor,
        uses=p.uses,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        created_at=clock.now(),
    )
    if p.when == When.NOW:
        change.cycle = _apply_now(actor=actor, sold=sold, template=template, p=p)
        change.status, change.applied_at = PassPlanChange.Status.APPLIED, clock.now()
    change.save(force_insert=True)
    verb = "plan changed" if p.when == When.NOW else "plan change scheduled"
    activity.record(
        actor=actor,
        verb=verb,
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "plan_change": p.as_dict()},
    )
    return change


@transaction.atomic
def plan_change_cancel(*, actor, sold_pass: Pass) -> PassPlanChange:
    """Cancel the change scheduled for the next cycle."""
    require(actor, Action.SELL)
    sold = lock_pass(sold_pass.pk)
    change = sold.plan_changes.filter(status=PassPlanChange.Status.SCHEDULED).first()
    if change is None:
        raise Conflict(f"No plan change is scheduled for {sold.name}.", code="no_change_scheduled")
    PassPlanChange.objects.filter(pk=change.pk).update(status=PassPlanChange.Status.CANCELLED)
    activity.record(
        actor=actor,
        verb="plan change cancelled",
        obj=sold,
        after={"to": change.to_name, "effective_on": change.effective_on.isoformat()},
    )
    change.refresh_from_db()
    return change


def plan_changes_apply(*, today: dt.date | None = None) -> int:
    """The daily job, before cycles are invoiced: apply each change scheduled to start by today,
    once (the pass's lock and the change's status), one membership per transaction."""
    today = today or clinic_today()
    applied = 0
    for pk in list(
        PassPlanChange.objects.filter(
            status=PassPlanChange.Status.SCHEDULED, effective_on__lte=today
        )
        .order_by("effective_on", "pk")
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            sold = lock_pass(PassPlanChange.objects.get(pk=pk).sold_pass_id)
            change = PassPlanChange.objects.select_related("to_template").get(pk=pk)
            if change.status != PassPlanChange.Status.SCHEDULED:
                continue  # another run applied it first
            if sold.status != Pass.Status.ACTIVE or sold.ends_after is not None:
                PassPlanChange.objects.filter(pk=pk).update(status=PassPlanChange.Status.CANCELLED)
                continue
            _apply_scheduled(sold, change, today)
            applied += 1
    return applied


def _apply_scheduled(sold: Pass, change: PassPlanChange, today: dt.date) -> None:
    before = activity.snapshot(sold)
    _switch_from_next(sold, change.to_template, today)
    PassPlanChange.objects.filter(pk=change.pk).update(
        status=PassPlanChange.Status.APPLIED, applied_at=clock.now()
    )
    activity.record(
        actor=None,
        verb="plan changed",
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "plan_change": change.pk},
    )


def _switch_from_next(sold: Pass, template: PassTemplate, today: dt.date) -> None:
    """The new plan from the first cycle not invoiced yet: the cycles not invoiced are made again on
    its terms (a new cycle length counts from that cycle's start), bookings in them move along."""
    first = (
        sold.pass_invoices.filter(invoice__isnull=False)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
        or 0
    ) + 1
    starts = cycle_start(sold, first - 1)
    _void_dropped(sold, template, starts)

    def switch():
        if template.cycle != sold.cycle:
            sold.anchor_date, sold.anchor_index = starts, first - 1
        _earn_to(sold, today, f"{sold.name} changed to {template.name}")
        _switch_terms(sold, template, first_seq=first)

    membership_cycles_retime(sold, first, switch)
