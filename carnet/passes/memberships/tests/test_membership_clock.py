"""Two simulated years of the daily job for weekly, monthly and yearly memberships, with month-end
and leap-day starts: exactly the expected cycle invoices, each once, on its own date (SPEC 6.2).
The expected dates come from dateutil's relativedelta, not from Carnet's own date code."""

import datetime as dt

import pytest
from dateutil.relativedelta import relativedelta

from carnet.billing.models import Invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships.services import membership_sell
from carnet.passes.tests.factories import at, membership_template
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

START, DAYS = dt.date(2028, 1, 31), 2 * 366


def _expected(start: dt.date, step, until: dt.date) -> list[dt.date]:
    dates, n = [], 0
    while start + step * n <= until:
        dates.append(start + step * n)
        n += 1
    return dates


def test_two_years_of_weekly_monthly_and_yearly_cycles_are_invoiced_once_each_on_their_date(
    front_desk, catalog
):
    clinic_set(time_zone="America/Toronto")
    end = START + dt.timedelta(days=DAYS - 1)
    plans = {
        "weekly": (START, relativedelta(weeks=1)),
        "monthly": (START, relativedelta(months=1)),
        "yearly": (dt.date(2028, 2, 29), relativedelta(years=1)),
    }
    sold = {}
    with clock.frozen(at(str(START), "08:00")):
        for cycle, (start, _) in plans.items():
            template = membership_template(catalog, name=f"{cycle} plan", cycle=cycle, price=1000)
            sold[cycle] = membership_sell(
                actor=front_desk.user, patient=make_patient(), template=template, start_date=start
            )
    day = START
    while day <= end:
        with clock.frozen(at(str(day), "03:00")):
            passes_daily()
            if day.day == 1:
                passes_daily()  # a second run the same day changes nothing
        day += dt.timedelta(days=1)
    for cycle, (start, step) in plans.items():
        invoices = Invoice.objects.filter(pass_invoice__sold_pass=sold[cycle]).order_by("pk")
        expected = _expected(start, step, end)
        assert [i.invoice_date for i in invoices] == expected, cycle
        assert [r.period_start for r in sold[cycle].pass_invoices.order_by("seq")] == expected
    # Month ends and leap days: 31 Jan → 29 Feb 2028 → 31 Mar; 29 Feb 2028 → 28 Feb 2029.
    monthly = [r.period_start for r in sold["monthly"].pass_invoices.order_by("seq")][:3]
    assert monthly == [dt.date(2028, 1, 31), dt.date(2028, 2, 29), dt.date(2028, 3, 31)]
    yearly = [r.period_start for r in sold["yearly"].pass_invoices.order_by("seq")]
    assert yearly[:2] == [dt.date(2028, 2, 29), dt.date(2029, 2, 28)]
    assert_ledger_ok()
