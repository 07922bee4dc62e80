"""Overdue states (issue 22 point 2): N days past due (default 14) a membership stops covering NEW
bookings — Explain says `past_due` with a sentence staff understand — while bookings it covers
stay; staff may override (logged); after M days (default 45) the clinic's choice: cancel or keep
it suspended. The check costs no query for a membership in good standing."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from carnet.billing.payments import payment_receive
from carnet.conftest import Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.activity import ActivityLog
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.permissions import AccessLevel
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as memberships
from carnet.passes.memberships.overdue import (
    membership_past_due_override,
    overdue_state,
    past_due_memberships,
)
from carnet.passes.models import Pass, PassInvoice, Redemption
from carnet.passes.redeeming import eligibility
from carnet.passes.redeeming.eligibility import pass_check
from carnet.passes.redeeming.redemption import explain, pass_attach
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        patient = make_patient()
        sold = memberships.membership_sell(
            actor=front_desk.user, patient=patient, template=membership_template(catalog, uses=None)
        )  # manual, unpaid
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": patient,
            "sold": sold,
            "prac": practitioner(catalog["location"]),
        }


def _book(s, day, **kw):
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, "09:00"),
        patients=[s["patient"]],
        **kw,
    )


def _live(appointment):
    return Redemption.objects.filter(
        visit__appointment=appointment, status__in=["reserved", "posted"]
    ).first()


def _on(day: str):
    return clock.frozen(at(day, "10:00"))


def _fresh(s) -> Pass:
    return Pass.objects.get(pk=s["sold"].pk)


def test_fourteen_days_past_due_it_stops_covering_new_bookings_but_keeps_existing_ones(s):
    kept = _book(s, "2026-05-25")  # booked while in good standing
    assert _live(kept)
    with _on("2026-05-14"):
        passes_daily()
        assert _fresh(s).past_due_since == dt.date(2026, 5, 1)
        assert _live(_book(s, "2026-05-26"))  # 13 days: still covers
    with _on("2026-05-15"):
        passes_daily()
        appointment = _book(s, "2026-05-27")
        assert _live(appointment) is None  # auto-select skipped it
        [entry] = explain(appointment.visits.get())
        assert entry["code"] == "past_due"
        assert entry["message"].startswith(
            "Past due: a membership payment has been owed for 14 days (since 2026-05-01)"
        )
        assert "_" not in entry["message"]
        assert "override it for a while on the membership's page" in entry["message"]
        with pytest.raises(Conflict) as refused:
            pass_attach(actor=s["fd"].user, visit=appointment.visits.get(), sold_pass=s["sold"])
        assert refused.value.code == "past_due"
        assert "not covering new bookings" in overdue_state(_fresh(s))["label"]
    assert _live(kept)  # the booking it already covered stays covered


def test_a_payment_at_the_desk_lifts_it_at_once(s):
    with _on("2026-05-20"):
        passes_daily()
        invoice = PassInvoice.objects.select_related("invoice").get(sold_pass=s["sold"]).invoice
        payment_receive(
            actor=s["fd"].user,
            patient=s["patient"],
            method="cash",
            amount_minor=invoice.balance_minor,
            allocations=[(invoice, invoice.balance_minor)],
        )
        assert _live(_book(s, "2026-05-27"))  # before the job runs again
        passes_daily()
        assert _fresh(s).past_due_since is None and overdue_state(_fresh(s)) is None


def test_staff_may_override_for_a_while_and_it_is_logged(s):
    with _on("2026-05-20"):
        passes_daily()
        with pytest.raises(ValidationFailed):
            membership_past_due_override(
                actor=s["fd"].user, sold_pass=s["sold"], until=dt.date(2026, 7, 1)
            )
        membership_past_due_override(
            actor=s["fd"].user, sold_pass=s["sold"], until=dt.date(2026, 5, 22)
        )
        assert _live(_book(s, "2026-05-27"))
        assert ActivityLog.objects.filter(verb="past due override").count() == 1
        assert "override" in overdue_state(_fresh(s))["label"]
    with _on("2026-05-23"):  # the override is over
        assert _live(_book(s, "2026-05-28")) is None


def test_a_practitioner_cannot_override(s):
    with _on("2026-05-20"), pytest.raises(NotAllowed):
        membership_past_due_override(
            actor=make_staff(AccessLevel.PRACTITIONER_LIMITED, practitioner=True).user,
            sold_pass=s["sold"],
            until=dt.date(2026, 5, 22),
        )


@pytest.mark.parametrize("action, status", [("cancel", "cancelled"), ("suspend", "active")])
def test_after_45_days_the_clinics_choice_cancel_or_keep_suspended(s, action, status):
    clinic_set(past_due_end_action=action)
    later = _book(s, "2026-06-25")  # covered by a cycle still to come
    with _on("2026-06-14"):  # 44 days
        passes_daily()
        assert _fresh(s).status == "active"
    with _on("2026-06-15"):  # 45 days
        passes_daily()
        passes_daily()  # twice: nothing twice
    sold = _fresh(s)
    assert sold.status == status
    assert (_live(later) is None) == (
        action == "cancel"
    )  # a cancelled membership voids the uses of later bookings
    assert ActivityLog.objects.filter(verb="cancelled (past due)").count() == (action == "cancel")


def test_the_check_costs_no_query_while_in_good_standing(s, monkeypatch):
    kwargs = dict(
        patient=s["patient"], treatment=s["cat"]["treatment"], visit_date=dt.date(2026, 5, 20)
    )

    def statements() -> int:
        sold = Pass.objects.prefetch_related("items", "pass_invoices").get(pk=s["sold"].pk)
        with CaptureQueriesContext(connection) as queries:
            assert pass_check(sold, **kwargs).ok
        return len(queries.captured_queries)

    assert _fresh(s).past_due_since is None
    with_check = statements()
    monkeypatch.setattr(eligibility, "past_due_refusal", lambda sold: None)  # as before issue 22
    assert statements() == with_check


def test_the_page_shows_past_due_and_overrides_through_the_api_and_the_page(s, client):
    with _on("2026-05-20"):
        passes_daily()
        client.force_login(s["fd"].user)
        url = reverse("memberships:detail", args=[s["sold"].pk])
        page = client.get(url).content.decode()
        assert "Past due 19 days — not covering new bookings" in page
        client.post(reverse("memberships:past_due_override", args=[s["sold"].pk]), {"until": "bad"})
        assert _fresh(s).past_due_override_until is None
        client.post(
            reverse("memberships:past_due_override", args=[s["sold"].pk]), {"until": "2026-05-21"}
        )
        assert _fresh(s).past_due_override_until == dt.date(2026, 5, 21)
        api = Api(s["fd"].user)
        answer = api.post(f"/passes/{s['sold'].pk}/past-due-override", {"until": "2026-05-25"})
        assert answer.status_code == 200, answer.content
        assert answer.json()["past_due"]["overridden"] is True
        assert (
            api.post(
                f"/passes/{s['sold'].pk}/past-due-override", {"until": "2026-09-01"}
            ).status_code
            == 422
        )


def test_a_cycle_is_past_due_only_from_the_day_after_its_due_date(s):
    passes_daily(today=dt.date(2026, 5, 1))  # invoiced today, unpaid: due, not past due
    assert (
        _fresh(s).past_due_since is None
        and overdue_state(_fresh(s)) is None
        and past_due_memberships() == []
    )
    with _on("2026-05-02"):
        passes_daily()
        assert overdue_state(_fresh(s))["label"].startswith("Past due 1 day —")
        assert [r["days"] for r in past_due_memberships()] == [1]
