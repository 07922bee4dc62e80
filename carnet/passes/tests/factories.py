"""Passes test data: a package template, a sold and paid package, a booking that may use it."""

import datetime as dt

from carnet.billing.payments import payment_receive
from carnet.core import clock
from carnet.passes.models import EligibleItem, PassTemplate
from carnet.passes.packages.selling import package_sell
from carnet.passes.selectors import pass_invoices
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import at, practitioner  # noqa: F401  (re-exported for tests)


def package_template(
    catalog, *, name="10 massages", price=90000, quantity=10, items=None, taxes=(), **fields
):
    """`items`: [(treatment, additional charge, compensation, limit)];
    default the catalog's treatment, free."""
    now = clock.now()
    template = PassTemplate.objects.create(
        name=name,
        price_minor=price,
        quantity=quantity,
        income_category=catalog["income_category"],
        created_at=now,
        updated_at=now,
        **fields,
    )
    template.taxes.set(taxes)
    for treatment, charge, compensation, limit in items or [(catalog["treatment"], 0, None, None)]:
        EligibleItem.objects.create(
            template=template,
            treatment=treatment,
            additional_charge_minor=charge,
            compensation_minor=compensation,
            limit=limit,
        )
    return template


def pay_in_full(actor, sold, method="cash"):
    for invoice in pass_invoices(sold):
        invoice.refresh_from_db()
        if invoice.balance_minor:
            payment_receive(
                actor=actor.user,
                patient=sold.patient,
                method=method,
                amount_minor=invoice.balance_minor,
                allocations=[(invoice, invoice.balance_minor)],
            )
    sold.refresh_from_db()
    return sold


def sold_package(actor, patient, template, *, paid=True, **kwargs):
    sold = package_sell(actor=actor.user, patient=patient, template=template, **kwargs)
    return pay_in_full(actor, sold) if paid else sold


def membership_template(
    catalog,
    *,
    name="Wellness monthly",
    price=6000,
    cycle="monthly",
    uses=2,
    term=None,
    items=None,
    taxes=(),
    **fields,
):
    """A membership: `price` per cycle, `uses` per cycle (None = unlimited), `term` cycles
    (None = open-ended)."""
    now = clock.now()
    template = PassTemplate.objects.create(
        kind="membership",
        name=name,
        price_minor=price,
        cycle=cycle,
        uses_per_cycle=uses,
        term_cycles=term,
        income_category=catalog["income_category"],
        created_at=now,
        updated_at=now,
        **fields,
    )
    template.taxes.set(taxes)
    for treatment, charge, compensation, limit in items or [(catalog["treatment"], 0, None, None)]:
        EligibleItem.objects.create(
            template=template,
            treatment=treatment,
            additional_charge_minor=charge,
            compensation_minor=compensation,
            limit=limit,
        )
    return template


def visit_tomorrow_arrived(desk, catalog, patient, zone="America/Toronto"):
    """Front Desk books the patient the catalog's treatment at 09:00 tomorrow (clinic time) and
    marks the arrival, so a package covering it is drawn."""
    day = (clock.today(zone) + dt.timedelta(days=1)).isoformat()
    appointment = appointment_book(
        actor=desk.user,
        treatment=catalog["treatment"],
        practitioner=practitioner(catalog["location"]),
        location=catalog["location"],
        start=at(day, "09:00"),
        patients=[patient],
    )
    appointment_arrive(actor=desk.user, appointment=appointment)
    return appointment
