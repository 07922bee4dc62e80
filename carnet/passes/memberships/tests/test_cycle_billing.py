"""The billing job's batched path (cycle_billing) gives exactly what issuing one membership at a
time gives, and its statement count does not grow with the number of memberships."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core import bulk, clock
from carnet.gateway.services import card_store
from carnet.passes.cycles import cycle_for
from carnet.passes.locks import lock_pass
from carnet.passes.memberships import cycle_billing
from carnet.passes.memberships import services as memberships
from carnet.passes.tests.factories import at, membership_template
from carnet.scheduling.tests.factories import clinic_set

JUNE = dt.date(2026, 6, 1)


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "cat": catalog,
            "templates": {
                "plain": membership_template(
                    catalog, name="Plain", taxes=[catalog["tax"]], pause_allowed=True
                ),
                "rollover": membership_template(
                    catalog, name="Rollover", rollover=True, rollover_cap=1
                ),
                "weekly": membership_template(catalog, name="Weekly", cycle="weekly", price=1500),
                "once": membership_template(catalog, name="One cycle", term=1),
                "yearly": membership_template(catalog, name="Yearly", cycle="yearly", price=50000),
                "unlimited": membership_template(catalog, name="Unlimited", uses=None),
            },
        }


def _sell(s, name, **kw):
    return memberships.membership_sell(
        actor=s["fd"].user, patient=make_patient(), template=s["templates"][name], **kw
    )


def _varied(s) -> list:
    """One of each case the job meets on June 1, sold on May 1."""
    fd = s["fd"].user
    automatic_patient = make_patient()
    card = card_store(
        actor=fd,
        patient=automatic_patient,
        number="4242424242424242",
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="P",
    )
    sold = [
        _sell(s, "plain"),
        _sell(s, "rollover"),
        _sell(s, "once"),
        _sell(s, "yearly"),
        _sell(s, "unlimited"),
        _sell(s, "weekly"),  # four weeks missed: more than one cycle due
        memberships.membership_sell(
            actor=fd,
            patient=automatic_patient,
            template=s["templates"]["plain"],
            payment_mode="automatic",
            card=card,
        ),
    ]
    paused = _sell(s, "plain")
    memberships.membership_pause(actor=fd, sold_pass=paused, cycles=1)
    ahead = _sell(s, "plain")
    cycle_for(
        lock_pass(ahead.pk), dt.date(2026, 6, 10), create=True
    )  # made ahead for a booking, not invoiced
    return [*sold, paused, ahead]


def _state(sold) -> tuple:
    sold.refresh_from_db()
    rows = []
    for row in sold.pass_invoices.select_related("invoice").order_by("seq"):
        invoice = row.invoice
        rows.append(
            (
                row.seq,
                row.due_on,
                row.period_start,
                row.period_end,
                row.unit_price_minor,
                row.amount_minor,
                row.net_minor,
                row.uses_allowed,
                row.used_count,
                row.skipped,
                row.next_attempt_on,
                invoice
                and (
                    invoice.subtotal_minor,
                    invoice.tax_minor,
                    invoice.location_id,
                    invoice.staff_id,
                    [(line.description, line.kind, line.net_minor) for line in invoice.lines.all()],
                ),
            )
        )
    return sold.deferred_minor, sold.status, rows


@pytest.mark.django_db
@pytest.mark.parametrize("copy_from", [bulk.COPY_FROM, 1], ids=["insert", "copy"])
def test_the_batch_gives_what_one_at_a_time_gives(s, monkeypatch, copy_from):
    monkeypatch.setattr(
        bulk, "COPY_FROM", copy_from
    )  # 1: every write of the job by COPY on PostgreSQL
    one_by_one, batched = _varied(s), _varied(s)
    for sold in one_by_one:
        cycle_billing.cycles_issue_one(sold.pk, JUNE)
    slow = []
    real = cycle_billing.membership_cycles_issue
    monkeypatch.setattr(
        cycle_billing,
        "membership_cycles_issue",
        lambda sold, **kw: slow.append(sold.pk) or real(sold, **kw),
    )
    issued = cycle_billing.cycles_issue(today=JUNE)
    assert set(slow) == {batched[5].pk, batched[7].pk, batched[8].pk}  # weekly, paused, made ahead
    assert len(issued) == 4 + 4 + 1  # plain, rollover, unlimited, automatic; four weeks; made ahead
    for mine, reference in zip(batched, one_by_one):
        assert _state(mine) == _state(reference), mine.name
    rolled = _state(batched[1])[2]
    assert [r[7] for r in rolled] == [1, 3]  # one of May's two unused uses moved into June (cap 1)
    assert (
        _state(batched[6])[2][-1][10] == JUNE
    )  # the automatic one's June cycle is due for charging
    assert cycle_billing.cycles_issue(today=JUNE) == []
    assert_ledger_ok()


@pytest.mark.django_db
def test_statements_do_not_grow_with_the_number_of_memberships(s, monkeypatch):
    monkeypatch.setattr(
        bulk, "COPY_FROM", 10**9
    )  # a COPY is not a statement CaptureQueriesContext sees

    def statements(count: int, sold_on: str, day: dt.date, expected: int) -> int:
        with clock.frozen(at(sold_on, "10:00")):
            for _ in range(count):
                _sell(s, "plain")
        with CaptureQueriesContext(connection) as queries:
            assert len(cycle_billing.cycles_issue(today=day)) == expected
        return len(queries)

    few = statements(5, "2026-05-01", JUNE, 5)
    many = statements(40, "2026-06-01", dt.date(2026, 7, 1), 45)  # the five others' July cycles too
    assert few == many and few <= 30, (few, many)
    assert_ledger_ok()
