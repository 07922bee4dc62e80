"""Real threads racing a plan change (issue 22 point 6) against bookings taking the membership's
uses and against the card charge of the current cycle: they serialise on the membership's lock, so
whatever the order the uses fit the new allowance and every payment is recorded once."""

import pytest

from carnet.billing.models import Payment
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.errors import CarnetError
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes.charging import pass_charge_due
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.plan_change import membership_plan_change
from carnet.passes.models import PassPlanChange, Redemption
from carnet.passes.redeeming.redemption import pass_attach
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def w():
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        catalog, desk = make_catalog(), make_staff()
        yield {
            "cat": catalog,
            "desk": desk,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
            "gold": membership_template(catalog, name="Gold", price=12000, uses=8),
            "basic": membership_template(catalog, name="Basic", price=6000, uses=2),
        }


def _visit(w, day, pass_choice=None):
    appointment = appointment_book(
        actor=w["desk"].user,
        treatment=w["cat"]["treatment"],
        practitioner=w["prac"],
        location=w["cat"]["location"],
        start=at(day, "09:00"),
        patients=[w["patient"]],
        pass_choice=pass_choice,
    )
    return appointment.visits.get()


def test_a_downgrade_racing_two_bookings_leaves_uses_within_the_new_allowance(w):
    sold = ms.membership_sell(actor=w["desk"].user, patient=w["patient"], template=w["gold"])
    pass_attach(
        actor=w["desk"].user, visit=_visit(w, "2026-05-05"), sold_pass=sold
    )  # one use taken before
    visits = [_visit(w, "2026-05-20"), _visit(w, "2026-05-21")]
    with clock.frozen(at("2026-05-11", "09:00")):
        work = [
            lambda: membership_plan_change(
                actor=w["desk"].user, sold_pass=sold, template=w["basic"], when="now"
            ),
            lambda: pass_attach(actor=w["desk"].user, visit=visits[0], sold_pass=sold),
            lambda: pass_attach(actor=w["desk"].user, visit=visits[1], sold_pass=sold),
        ]
        results = race(3, lambda i: work[i]())
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)]
    assert not unexpected, unexpected
    assert isinstance(results[0], PassPlanChange)
    # Basic allows 2 a cycle, carried: the use on the 5th leaves one for the rest of
    # May, whoever came first.
    live = Redemption.objects.filter(
        sold_pass=sold, status__in=["reserved", "posted"], visit__in=visits
    )
    assert live.count() == 1
    new = sold.pass_invoices.order_by("-seq").first()
    assert (new.uses_allowed, new.used_count) == (1, 1)
    assert_ledger_ok()


def test_a_plan_change_racing_the_cycle_charge_records_every_payment_once(w):
    card = card_store(
        actor=w["desk"].user,
        patient=w["patient"],
        number="4242424242424242",
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Pat Test",
    )
    sold = ms.membership_sell(
        actor=w["desk"].user,
        patient=w["patient"],
        template=w["basic"],
        payment_mode="automatic",
        card=card,
    )  # the first cycle waits for its charge
    with clock.frozen(at("2026-05-11", "09:00")):
        work = [
            lambda: membership_plan_change(
                actor=w["desk"].user, sold_pass=sold, template=w["gold"], when="now"
            ),
            lambda: pass_charge_due(sold_pass=sold),
        ]
        results = race(2, lambda i: work[i]())
        assert not [r for r in results if isinstance(r, Exception)], results
        pass_charge_due(
            sold_pass=sold
        )  # whatever is still due (the new plan's invoice) is charged now
    charged = sum(TestGatewayCharge.objects.values_list("amount_minor", flat=True))
    assert charged == sum(Payment.objects.values_list("amount_minor", flat=True))
    owed = sum(r.invoice.balance_minor for r in sold.pass_invoices.select_related("invoice"))
    assert owed == 0
    assert_ledger_ok()
