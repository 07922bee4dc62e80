"""Real threads racing for a package's uses (SPEC 5.3, CONVENTIONS 9): the last use goes to exactly
one visit, a visit is never covered twice, and losers get a clean Conflict on
SQLite and PostgreSQL."""

import pytest

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_catalog, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.errors import CarnetError, Conflict
from carnet.passes.memberships.services import membership_sell
from carnet.passes.models import Pass, PassItem, Redemption
from carnet.passes.packages.selling import package_sell
from carnet.passes.redeeming.redemption import next_use_share, pass_attach
from carnet.passes.tests.factories import (
    at,
    membership_template,
    package_template,
    practitioner,
    sold_package,
)
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]
LIVE = ("reserved", "posted")
SLOTS = [
    (f"2026-05-{day}", hhmm)
    for day in (11, 12, 13, 14, 15, 18)
    for hhmm in ("09:00", "11:00", "13:00", "15:00")
]


def race_outcomes(results):
    """Each result as "ok" or "refused:<code>"; anything else (a lock error,
    an IntegrityError) fails."""
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)]
    assert not unexpected, unexpected
    return sorted("refused:" + r.code if isinstance(r, CarnetError) else "ok" for r in results)


@pytest.fixture
def world():
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        catalog, desk = make_catalog(), make_staff()
        yield {
            "cat": catalog,
            "desk": desk,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
        }


def race_visits(w, n):
    """n booked visits of the patient at different times, none covered by a package."""
    visits = []
    assert n <= len(SLOTS)
    for day, hhmm in SLOTS[:n]:
        appointment = appointment_book(
            actor=w["desk"].user,
            treatment=w["cat"]["treatment"],
            practitioner=w["prac"],
            location=w["cat"]["location"],
            start=at(day, hhmm),
            patients=[w["patient"]],
            pass_choice=None,
        )
        visits.append(appointment.visits.get())
    return visits


def _counts(sold):
    sold.refresh_from_db()
    rows = Redemption.objects.filter(sold_pass=sold)
    return {
        "remaining": sold.remaining,
        "reserved": sold.reserved_count,
        "posted": sold.posted_count,
        "live_rows": rows.filter(status__in=LIVE).count(),
        "reserved_rows": rows.filter(status="reserved").count(),
        "item_used": sum(
            PassItem.objects.filter(sold_pass=sold).values_list("used_count", flat=True)
        ),
    }


@pytest.mark.parametrize(
    "quantity, used", [(1, 0), (3, 2)], ids=["quantity-1", "quantity-3-two-used"]
)
def test_twenty_visits_racing_for_the_last_use_exactly_one_wins(world, quantity, used):
    template = package_template(
        world["cat"], name=f"{quantity} massages", price=30000, quantity=quantity
    )
    sold = sold_package(world["desk"], world["patient"], template)
    visits = race_visits(world, 20 + used)
    for visit in visits[20:]:  # the uses already taken
        pass_attach(actor=world["desk"].user, visit=visit, sold_pass=sold)
    visits = visits[:20]
    results = race(
        20, lambda i: pass_attach(actor=world["desk"].user, visit=visits[i], sold_pass=sold)
    )
    assert race_outcomes(results) == ["ok"] + ["refused:used_up"] * 19
    [winner] = [r for r in results if isinstance(r, Redemption)]
    assert all(isinstance(r, Conflict) for r in results if r is not winner)
    assert Redemption.objects.filter(visit__in=visits, status__in=LIVE).get().pk == winner.pk
    assert _counts(sold) == {
        "remaining": 0,
        "reserved": quantity,
        "posted": 0,
        "live_rows": quantity,
        "reserved_rows": quantity,
        "item_used": quantity,
    }
    assert_ledger_ok()


def test_auto_select_racing_for_the_last_use_never_fails_the_booking(world):
    """Auto-select reads the passes before it locks one: the bookings that lose the last use go on
    with the next package, or with none, instead of failing (found by the live-server load test)."""
    template = package_template(world["cat"], name="Last one", price=30000, quantity=1)
    sold = sold_package(world["desk"], world["patient"], template)
    visits = race_visits(world, 8)
    results = race(8, lambda i: pass_attach(actor=world["desk"].user, visit=visits[i]))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r is not None for r in results) == [False] * 7 + [True]
    assert _counts(sold)["remaining"] == 0
    assert_ledger_ok()


def test_one_visit_attached_twice_at_once_is_covered_once_and_the_loser_gets_a_conflict(world):
    template = package_template(world["cat"], quantity=10)
    sold = sold_package(world["desk"], world["patient"], template)
    [visit] = race_visits(world, 1)
    results = race(6, lambda i: pass_attach(actor=world["desk"].user, visit=visit, sold_pass=sold))
    assert race_outcomes(results) == ["ok"] + ["refused:already_covered"] * 5
    assert _counts(sold) == {
        "remaining": 9,
        "reserved": 1,
        "posted": 0,
        "live_rows": 1,
        "reserved_rows": 1,
        "item_used": 1,
    }
    assert_ledger_ok()


def test_one_visit_attached_from_two_packages_at_once_is_covered_once(world):
    """Two different packages: no shared pass lock, so only the visit's own guard
    can stop the second."""
    template = package_template(world["cat"], quantity=10)
    first = sold_package(world["desk"], world["patient"], template)
    second = sold_package(world["desk"], world["patient"], template)
    [visit] = race_visits(world, 1)
    results = race(
        6,
        lambda i: pass_attach(
            actor=world["desk"].user, visit=visit, sold_pass=(first, second)[i % 2]
        ),
    )
    assert race_outcomes(results) == ["ok"] + ["refused:already_covered"] * 5
    assert Redemption.objects.filter(visit=visit, status__in=LIVE).count() == 1
    assert sorted(
        Pass.objects.filter(pk__in=[first.pk, second.pk]).values_list("reserved_count", flat=True)
    ) == [0, 1]
    assert_ledger_ok()


def test_arrivals_racing_on_one_package_each_post_their_share_under_its_lock(world):
    """Seven visits covered by one package arrive at once. Each arrival reads its use with the
    pass locked in the same statement; one that waited for the lock must price its use from the
    pass as the winner left it (PostgreSQL re-reads the locked row), or two would take the same
    share and the last would not take the rest: the shares are those of arrivals one by one."""
    template = package_template(world["cat"], name="7 massages", price=10000, quantity=7)
    sold = sold_package(world["desk"], world["patient"], template)
    visits = race_visits(world, 7)
    for visit in visits:
        pass_attach(actor=world["desk"].user, visit=visit, sold_pass=sold)
    sold.refresh_from_db()
    left, to_post, shares = sold.deferred_minor - sold.recognised_minor, 7, []
    while to_post:
        shares.append(next_use_share(left, to_post))
        left, to_post = left - shares[-1], to_post - 1
    results = race(
        7,
        lambda i: appointment_arrive(actor=world["desk"].user, appointment=visits[i].appointment),
    )
    assert race_outcomes(results) == ["ok"] * 7
    posted = Redemption.objects.filter(sold_pass=sold, status="posted")
    assert sorted(posted.values_list("value_minor", flat=True)) == sorted(shares)
    assert sorted(posted.values_list("remaining_after", flat=True)) == [0] * 7
    sold.refresh_from_db()
    assert (sold.posted_count, sold.reserved_count) == (7, 0)
    assert sold.recognised_minor == sold.deferred_minor
    assert_ledger_ok()


def _api_race(world, visits, body) -> list[tuple[int, str | None]]:
    """POST /appointments/{id}/patients/{pid}/pass for visits[i] from thread i, each request logged
    in beforehand and with its own Idempotency-Key; sorted (status, error code) pairs."""
    clients = [Api(world["desk"].user) for _ in visits]

    def attach(i):
        response = clients[i].post(
            f"/appointments/{visits[i].appointment_id}/patients/{world['patient'].pk}/pass",
            body,
            **{"Idempotency-Key": f"race-attach-{i}"},
        )
        return response.status_code, response.json().get("code")

    results = race(len(visits), attach)
    assert all(isinstance(r, tuple) for r in results), results  # no exception escaped a request
    return sorted(results, key=str)


def test_twenty_api_requests_racing_for_the_last_use_one_201_and_nineteen_409_used_up(world):
    template = package_template(world["cat"], name="1 massage", price=9000, quantity=1)
    sold = sold_package(world["desk"], world["patient"], template)
    visits = race_visits(world, 20)
    assert _api_race(world, visits, {"pass_id": sold.pk}) == sorted(
        [(201, None)] + [(409, "used_up")] * 19, key=str
    )
    assert Redemption.objects.filter(visit__in=visits, status__in=LIVE).count() == 1
    assert _counts(sold) == {
        "remaining": 0,
        "reserved": 1,
        "posted": 0,
        "live_rows": 1,
        "reserved_rows": 1,
        "item_used": 1,
    }
    assert_ledger_ok()


def test_one_visit_attached_through_the_api_from_six_requests_at_once_is_one_201(world):
    sold = sold_package(
        world["desk"], world["patient"], package_template(world["cat"], quantity=10)
    )
    [visit] = race_visits(world, 1)
    results = _api_race(world, [visit] * 6, None)  # auto-select
    assert results == sorted([(201, None)] + [(409, "already_covered")] * 5, key=str)
    assert _counts(sold)["reserved"] == _counts(sold)["live_rows"] == 1
    assert_ledger_ok()


@pytest.mark.parametrize("rule", ["once_per_patient", "new_patients_only"])
def test_intro_offer_sales_racing_for_one_patient_sell_once(world, rule):
    """The intro-offer check reads the patient's passes before the sale writes one; without the lock
    on the patient two sales at the same moment both passed it (issue 23). Once per patient: six
    sales of one template; new patients only: six sales of three such templates."""
    templates = [
        package_template(world["cat"], name=f"Intro {n}", price=5000, quantity=1, **{rule: True})
        for n in range(2 if rule == "new_patients_only" else 1)
    ]
    if rule == "new_patients_only":
        templates.append(membership_template(world["cat"], name="Intro month", **{rule: True}))

    def sell(i):
        template = templates[i % len(templates)]
        sell = membership_sell if template.kind == "membership" else package_sell
        with clock.frozen(at("2026-05-01", "10:00")):
            return sell(actor=world["desk"].user, patient=world["patient"], template=template)

    results = race(6, sell)
    assert race_outcomes(results) == ["ok"] + [f"refused:intro_{rule}"] * 5
    assert Pass.objects.filter(patient=world["patient"]).count() == 1
    assert_ledger_ok()
