"""Selling a package (SPEC 5.2, 9.1, 9.6): the sold copy, its instalments, and their invoices.

A package paid in full is one instalment (1 of 1) invoiced at once. A payment plan splits the
price over N monthly instalments (remainder to the last); the first is invoiced at the sale, the
rest by `pass_invoices_bill`, the clinic's daily job, which also charges a card on file.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from carnet.billing.invoicing import LineInput
from carnet.billing.tax import line_amounts
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity, clock
from carnet.core.clock import add_months
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.money import Money
from carnet.core.permissions import Action, require
from carnet.passes.invoicing import pass_invoice_issue, template_line
from carnet.passes.models import Pass, PassInvoice, PassItem, PassTemplate
from carnet.passes.setup.expiry_rules import expiry_allowed, expiry_date, expiry_terms
from carnet.passes.setup.intro_offers import intro_check, intro_override_record
from carnet.passes.terms import items_copy, pass_terms
from carnet.people.models import StaffMember


def instalment_plan(template: PassTemplate, currency: str) -> list[tuple[int, int, int]]:
    """(unit price, gross, net) per instalment: the price split without losing a cent."""
    rates = [t.rate for t in template.taxes.all()]
    plan = []
    for part in Money(template.price_minor, currency).allocate(template.instalments):
        amounts = line_amounts(
            gross=part.minor, rates=rates, inclusive=template.tax_inclusive, currency=currency
        )
        plan.append((part.minor, amounts.total, amounts.net))
    return plan


def package_invoice_lines(template: PassTemplate) -> list[list[LineInput]]:
    """The invoice lines selling the package `template` now would issue (for a checkout's live
    totals): its first instalment."""
    return [template_line(template, instalment_plan(template, clinic_get().currency)[0][0])]


def default_expiry(template: PassTemplate, purchase_date: dt.date) -> dt.date | None:

    return expiry_date(
        purchase_date=purchase_date, value=template.expiry_value, unit=template.expiry_unit
    )


def _check_package_sale(template: PassTemplate, patient, *, sold_by, card, online: bool) -> None:
    """The template can be sold (a package, not archived, sold online if bought there, with eligible
    items), by an active staff member, on one of the patient's cards."""
    if template.kind != PassTemplate.Kind.PACKAGE:
        raise ValidationFailed(
            f"{template} is not a package.", fields={"template_id": ["Not a package."]}
        )
    if template.archived:
        raise Conflict(
            f"{template} is archived; it is no longer sold. Unarchive it in Settings first.",
            code="template_archived",
        )
    if online and not template.sold_online:
        raise Conflict(
            f"{template} is not sold online; the clinic sells it at the front desk.",
            code="not_sold_online",
        )
    if not template.items.exists():
        raise ValidationFailed(
            f"{template} has no eligible items; add some in Settings before selling it.",
            fields={"template_id": ["No eligible items."]},
        )
    if sold_by is not None and not sold_by.is_active:
        raise ValidationFailed(
            f"{sold_by} is not an active staff member.", fields={"sold_by_id": ["Inactive."]}
        )
    if card is not None and (card.patient_id != patient.pk or card.removed_at):
        raise ValidationFailed(
            "Choose one of this patient's cards on file.", fields={"card_id": ["Not theirs."]}
        )


def _pass_create(
    actor,
    patient,
    template: PassTemplate,
    plan,
    *,
    today,
    now,
    expires_on,
    clinic,
    sold_by,
    card,
    location,
    online: bool,
) -> Pass:
    """The patient's own copy of the template's terms (passes.terms), with the clinic's expiry
    terms of the day, its taxes and its eligible items."""
    sold = Pass.objects.create(
        **pass_terms(template, clinic=clinic),
        patient=patient,
        price_minor=sum(gross for _, gross, _ in plan),
        net_minor=sum(net for _, _, net in plan),
        purchase_date=today,
        purchased_at=now,
        expires_on=expires_on,
        sold_by=sold_by,
        sold_online=online,
        card=card,
        location=location,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    sold.taxes.set(template.taxes.all())
    PassItem.objects.bulk_create(items_copy(sold, template.items.all()))
    return sold


def _instalments_create(sold: Pass, plan, today: dt.date) -> list[PassInvoice]:
    """Its instalments' rows (one without a payment plan), due a month apart from today."""
    return PassInvoice.objects.bulk_create(
        PassInvoice(
            sold_pass=sold,
            seq=n + 1,
            due_on=add_months(today, n),
            unit_price_minor=unit,
            amount_minor=gross,
            net_minor=net,
        )
        for n, (unit, gross, net) in enumerate(plan)
    )


@transaction.atomic
def package_sell(
    *,
    actor,
    patient,
    template: PassTemplate,
    sold_by: StaffMember | None = None,
    expires_on: dt.date | None | str = "default",
    card=None,
    location=None,
    action: Action | None = Action.SELL,
    online: bool = False,
    intro_override: bool = False,
) -> Pass:
    """Sell a package: the patient's own copy of the template, and the invoice for its price (the
    first instalment with a payment plan). `expires_on="default"` takes the template's expiry.
    An intro offer the patient may not have is refused unless `intro_override` (logged)."""
    if action is not None:
        require(actor, action)
    _check_package_sale(template, patient, sold_by=sold_by, card=card, online=online)
    overridden = intro_check(
        actor=actor, template=template, patient=patient, override=intro_override
    )
    clinic = clinic_get()
    now = clock.now()
    today = clinic_today(clinic)
    if expires_on == "default":
        expires_on = default_expiry(template, today)
    # The clinic's rule of the day, which the pass keeps (passes.terms): a later change never
    # alters it.
    expiry_allowed(purchase_date=today, expires_on=expires_on, terms=expiry_terms(clinic))
    plan = instalment_plan(template, clinic.currency)
    sold = _pass_create(
        actor,
        patient,
        template,
        plan,
        today=today,
        now=now,
        expires_on=expires_on,
        clinic=clinic,
        sold_by=sold_by,
        card=card,
        location=location,
        online=online,
    )
    rows = _instalments_create(sold, plan, today)
    pass_invoice_issue(actor=actor, row=rows[0], action=action, location=location)
    if card is not None:  # the daily job charges it unless it is paid at the desk first
        PassInvoice.objects.filter(pk=rows[0].pk).update(next_attempt_on=today)
    activity.record(
        actor=actor,
        verb="sold" if not online else "bought_online",
        obj=sold,
        after=activity.snapshot(sold),
    )
    intro_override_record(actor=actor, sold=sold, sentence=overridden)
    return sold
