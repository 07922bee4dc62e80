"""Real threads racing for the last of a value package's balance (issue 23 point 3): the holds never
exceed the balance; with one visit's worth left exactly one booking gets it, and with a visit and a
half left one gets full cover and one the remainder; losers get a clean Conflict.
SQLite and PostgreSQL."""

import pytest

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import race
from carnet.core.errors import Conflict
from carnet.passes.models import Redemption
from carnet.passes.redeeming.redemption import pass_attach
from carnet.passes.tests.factories import sold_package

from .test_races import LIVE, race_outcomes, race_visits, world  # noqa: F401  (the fixture)
from .test_value_redemption import value_template

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "face, drawn",
    [(9000, [9000]), (15000, [6000, 9000])],
    ids=["one-visit-left", "a-visit-and-a-half-left"],
)
def test_bookings_racing_for_the_last_of_the_balance_never_take_more_than_it_holds(
    world, face, drawn
):
    sold = sold_package(
        world["desk"], world["patient"], value_template(world["cat"], price=face, face=face)
    )
    visits = race_visits(world, 12)
    results = race(
        12, lambda i: pass_attach(actor=world["desk"].user, visit=visits[i], sold_pass=sold)
    )
    assert race_outcomes(results) == ["ok"] * len(drawn) + ["refused:used_up_value"] * (
        12 - len(drawn)
    )
    assert all(isinstance(r, (Redemption, Conflict)) for r in results)
    live = Redemption.objects.filter(sold_pass=sold, status__in=LIVE)
    assert sorted(live.values_list("drawn_minor", flat=True)) == drawn
    sold.refresh_from_db()
    assert (sold.value_reserved_minor, sold.value_left, sold.reserved_count) == (
        face,
        0,
        len(drawn),
    )
    assert_ledger_ok()


def test_auto_select_racing_for_the_balance_never_fails_a_booking(world):
    sold = sold_package(
        world["desk"], world["patient"], value_template(world["cat"], price=12000, face=12000)
    )
    visits = race_visits(world, 6)
    results = race(6, lambda i: pass_attach(actor=world["desk"].user, visit=visits[i]))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.drawn_minor for r in results if r is not None) == [3000, 9000]
    sold.refresh_from_db()
    assert sold.value_left == 0
    assert_ledger_ok()
