"""Changing a member's plan (issue 22 point 6): the preview, what is posted (equal to the preview),
uses carried or reset, the cycle grid after a change of cycle length, no proration, a change at the
next cycle applied by the daily job, and the refusals. The ledger's invariants
hold after each step."""

import datetime as dt

import pytest

from carnet.billing.models import InvoiceLine
from carnet.billing.payments import payment_receive
from carnet.billing.selectors import credit_balance
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.clinic.models import Treatment
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.core.models import ActivityLog
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.cycles import memberships_recognise
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.memberships.plan_change import (
    membership_plan_change,
    plan_change_cancel,
    plan_change_preview,
    plan_changes_apply,
)
from carnet.passes.models import PassPlanChange, Redemption
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
            "basic": membership_template(catalog, name="Basic", price=6000, uses=2),
            "gold": membership_template(catalog, name="Gold", price=12000, uses=8),
        }


def _sell(s, template=None, paid=True, **kw):
    sold = ms.membership_sell(
        actor=s["fd"].user, patient=s["patient"], template=template or s["basic"], **kw
    )
    if paid:
        invoice = sold.pass_invoices.get().invoice
        payment_receive(
            actor=s["fd"].user,
            patient=s["patient"],
            method="cash",
            amount_minor=invoice.balance_minor,
            allocations=[(invoice, invoice.balance_minor)],
        )
    return sold


def _book(s, day, hhmm="09:00"):
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, hhmm),
        patients=[s["patient"]],
    )


def _change(s, sold, template, when="now", preview=None):
    expected = (
        None
        if preview is None
        else {
            "credit_minor": preview.credit_minor,
            "charge_minor": preview.charge_minor,
            "effective_on": preview.effective_on,
        }
    )
    return membership_plan_change(
        actor=s["fd"].user, sold_pass=sold, template=template, when=when, expected=expected
    )


def _rows(sold):
    return list(sold.pass_invoices.select_related("invoice").order_by("seq"))


def test_an_upgrade_at_once_credits_the_unused_days_and_charges_the_rest_as_previewed(s):
    sold = _sell(s)
    _book(s, "2026-05-05")  # a use before the change stays in the old cycle
    later = _book(s, "2026-05-20")  # a booking after it moves to the new plan's cycle
    with clock.frozen(at("2026-05-11", "09:00")):
        memberships_recognise()
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=s["gold"], when="now")
        # May has 31 days; 21 are unused from the 11th.
        assert (p.credit_days, p.cycle_days, p.credit_minor) == (21, 31, 6000 * 21 // 31)
        assert (
            p.credit_to_account_minor == p.credit_minor
        )  # the cycle was paid: the credit is money back
        assert p.charge_minor == 12000 * 21 // 31 and p.charge_last_day == dt.date(2026, 5, 31)
        assert (
            p.credit_applied_minor == p.credit_minor
            and p.due_now_minor == p.charge_minor - p.credit_minor
        )
        assert (p.uses, p.uses_left) == ("carried", 8 - 1)
        change = _change(s, sold, s["gold"], preview=p)
        assert_ledger_ok()
    old, new = _rows(sold)
    taken = old.invoice.lines.get(kind=InvoiceLine.Kind.PASS_CREDIT)
    assert -taken.total_minor == p.credit_minor == change.credit_minor
    assert new.invoice.total_minor == p.charge_minor == change.charge_minor
    assert (
        new.invoice.applied_minor == p.credit_applied_minor
        and new.invoice.balance_minor == p.due_now_minor
    )
    assert credit_balance(s["patient"]) == 0
    assert (old.period_end, new.period_start, new.period_end) == (
        dt.date(2026, 5, 11),
        dt.date(2026, 5, 11),
        dt.date(2026, 6, 1),
    )
    assert (old.used_count, new.used_count, new.uses_allowed) == (1, 1, 7)
    assert Redemption.objects.get(visit__appointment=later, status="reserved").cycle_id == new.pk
    sold.refresh_from_db()
    assert (sold.name, sold.template_id, sold.cycle_price_minor, sold.uses_per_cycle) == (
        "Gold",
        s["gold"].pk,
        12000,
        8,
    )
    assert old.recognised_minor == old.net_minor  # the old cycle's days are over: its fee is earned
    assert change.status == "applied" and ActivityLog.objects.filter(verb="plan changed").exists()
    # The next cycle starts on the old date at the new price.
    with clock.frozen(at("2026-06-01", "09:00")):
        cycles_issue(today=dt.date(2026, 6, 1))
        nxt = _rows(sold)[-1]
        assert (nxt.period_start, nxt.period_end, nxt.invoice.total_minor) == (
            dt.date(2026, 6, 1),
            dt.date(2026, 7, 1),
            12000,
        )
        memberships_recognise()
        assert_ledger_ok()


def test_a_downgrade_leaves_the_rest_of_the_credit_on_the_account(s):
    sold = _sell(s, s["gold"])
    with clock.frozen(at("2026-05-11", "09:00")):
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=s["basic"], when="now")
        _change(s, sold, s["basic"], preview=p)
        assert_ledger_ok()
    assert p.credit_minor > p.charge_minor and p.due_now_minor == 0
    assert credit_balance(s["patient"]) == p.credit_to_account_minor - p.credit_applied_minor > 0
    _, new = _rows(sold)
    assert new.invoice.balance_minor == 0


def test_an_unpaid_cycle_credit_comes_off_what_is_owed(s):
    sold = _sell(s, paid=False)
    with clock.frozen(at("2026-05-11", "09:00")):
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=s["gold"], when="now")
        assert p.credit_to_account_minor == 0 and p.due_now_minor == p.charge_minor
        _change(s, sold, s["gold"], preview=p)
        assert_ledger_ok()
    old, new = _rows(sold)
    assert (
        old.invoice.balance_minor == 6000 - p.credit_minor
        and new.invoice.balance_minor == p.charge_minor
    )
    assert balance(accounts.AR) == 6000 - p.credit_minor + p.charge_minor


def test_taxes_of_both_plans_are_previewed_as_posted(s):
    tax = s["cat"]["tax"]
    basic = membership_template(s["cat"], name="Taxed basic", price=5000, taxes=[tax])
    gold = membership_template(
        s["cat"], name="Taxed gold", price=9000, taxes=[tax], tax_inclusive=True
    )
    sold = _sell(s, basic)
    with clock.frozen(
        at("2026-05-20", "23:30")
    ):  # late evening in Toronto, already the 21st in UTC
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=gold, when="now")
        assert p.effective_on == dt.date(2026, 5, 20) and p.credit_days == 12
        _change(s, sold, gold, preview=p)
        assert_ledger_ok()
    old, new = _rows(sold)
    assert -old.invoice.lines.get(kind="pass_credit").total_minor == p.credit_minor
    assert new.invoice.total_minor == p.charge_minor and new.invoice.tax_minor > 0


def test_another_cycle_length_starts_a_full_cycle_today_with_its_uses_reset(s):
    weekly = membership_template(s["cat"], name="Weekly", price=2000, cycle="weekly", uses=1)
    sold = _sell(s)
    _book(s, "2026-05-05")
    with clock.frozen(at("2026-05-11", "09:00")):
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=weekly, when="now")
        assert (p.uses, p.uses_left, p.charge_minor, p.charge_last_day) == (
            "reset",
            1,
            2000,
            dt.date(2026, 5, 17),
        )
        _change(s, sold, weekly, preview=p)
        assert_ledger_ok()
    with clock.frozen(at("2026-05-18", "09:00")):
        cycles_issue(today=dt.date(2026, 5, 18))
        rows = _rows(sold)
        assert [(r.period_start, r.period_end) for r in rows[1:]] == [
            (dt.date(2026, 5, 11), dt.date(2026, 5, 18)),
            (dt.date(2026, 5, 18), dt.date(2026, 5, 25)),
        ]
        assert rows[-1].invoice.total_minor == 2000
        memberships_recognise()
        assert_ledger_ok()


def test_without_proration_the_plan_applies_now_and_the_price_from_the_next_cycle(s):
    clinic_set(time_zone="America/Toronto", membership_proration="none")
    sold = _sell(s)
    with clock.frozen(at("2026-05-11", "09:00")):
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=s["gold"], when="now")
        assert (p.proration, p.credit_minor, p.charge_minor, p.uses) == ("none", 0, 0, "carried")
        _change(s, sold, s["gold"], preview=p)
        assert_ledger_ok()
    [row] = _rows(sold)
    assert row.invoice.total_minor == 6000 and row.uses_allowed == 8
    with clock.frozen(at("2026-06-01", "09:00")):
        cycles_issue(today=dt.date(2026, 6, 1))
        assert _rows(sold)[-1].invoice.total_minor == 12000
        assert_ledger_ok()


def test_a_change_at_the_next_cycle_is_applied_by_the_daily_job(s):
    other = Treatment.objects.create(
        name="Yoga",
        discipline=s["cat"]["discipline"],
        duration_minutes=60,
        price_minor=5000,
        income_category=s["cat"]["income_category"],
    )
    yoga = membership_template(
        s["cat"], name="Yoga", price=8000, uses=4, items=[(other, 0, None, None)]
    )
    sold = _sell(s)
    june = _book(s, "2026-06-03")  # massage in the next cycle: the new plan does not cover it
    with clock.frozen(at("2026-05-11", "09:00")):
        p = plan_change_preview(
            actor=s["fd"].user, sold_pass=sold, template=yoga, when="next_cycle"
        )
        assert (p.effective_on, p.credit_minor, p.charge_minor, p.uses) == (
            dt.date(2026, 6, 1),
            0,
            0,
            "reset",
        )
        change = _change(s, sold, yoga, when="next_cycle", preview=p)
        assert change.status == "scheduled"
        with pytest.raises(Conflict) as twice:
            _change(s, sold, s["gold"])
        assert twice.value.code == "change_scheduled"
        assert plan_changes_apply(today=dt.date(2026, 5, 31)) == 0
    with clock.frozen(at("2026-06-01", "06:00")):
        result = passes_daily(today=dt.date(2026, 6, 1))
        assert result["errors"] == [] and plan_changes_apply(today=dt.date(2026, 6, 1)) == 0  # once
        change.refresh_from_db()
        assert change.status == "applied"
        row = _rows(sold)[-1]
        assert (row.period_start, row.invoice.total_minor, row.uses_allowed) == (
            dt.date(2026, 6, 1),
            8000,
            4,
        )
        assert Redemption.objects.get(visit__appointment=june).status == "voided"
        sold.refresh_from_db()
        assert sold.name == "Yoga" and sold.items.filter(treatment=other).exists()
        assert_ledger_ok()


def test_a_scheduled_change_can_be_cancelled(s):
    sold = _sell(s)
    _change(s, sold, s["gold"], when="next_cycle")
    assert plan_change_cancel(actor=s["fd"].user, sold_pass=sold).status == "cancelled"
    assert plan_changes_apply(today=dt.date(2026, 6, 1)) == 0


@pytest.mark.parametrize("case", ["same", "paused", "archived", "cancelled"])
def test_refusals_are_clear(s, case):
    template = s["gold"]
    sold = _sell(
        s,
        s["basic"]
        if case != "paused"
        else membership_template(s["cat"], name="Pausable", pause_allowed=True, pause_max_cycles=2),
    )
    if case == "same":
        template = s["basic"]
    elif case == "paused":
        ms.membership_pause(actor=s["fd"].user, sold_pass=sold, cycles=1)
    elif case == "archived":
        template.archived = True
        template.save()
    else:
        ms.membership_cancel(actor=s["fd"].user, sold_pass=sold)
    with pytest.raises(Conflict) as refused:
        _change(s, sold, template)
    assert (
        refused.value.code
        == {
            "same": "same_plan",
            "paused": "paused",
            "archived": "template_archived",
            "cancelled": "pass_ending",
        }[case]
    )
    assert PassPlanChange.objects.count() == 0


def test_the_change_refuses_when_the_preview_is_stale(s):
    sold = _sell(s)
    with clock.frozen(at("2026-05-11", "23:50")):
        p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=s["gold"], when="now")
    with clock.frozen(
        at("2026-05-12", "00:10")
    ):  # midnight passed in Toronto: one day less to credit
        with pytest.raises(Conflict) as stale:
            _change(s, sold, s["gold"], preview=p)
    assert stale.value.code == "preview_changed" and PassPlanChange.objects.count() == 0
    assert_ledger_ok()


def test_a_change_on_the_first_day_credits_the_whole_cycle(s):
    sold = _sell(s)
    p = plan_change_preview(actor=s["fd"].user, sold_pass=sold, template=s["gold"], when="now")
    assert p.credit_minor == 6000 and p.charge_minor == 12000
    _change(s, sold, s["gold"], preview=p)
    assert_ledger_ok()
    with clock.frozen(at("2026-05-12", "09:00")):
        memberships_recognise()
        assert_ledger_ok()
