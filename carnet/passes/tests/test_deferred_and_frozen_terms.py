"""Issue 17: one definition of "value still deferred" (what the invoices put there, less what was
recognised), what happens to a payment plan's instalments not invoiced yet when the package ends,
and the terms a sale copies staying frozen when the template changes."""

import datetime as dt

import pytest

from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.ledger import accounts
from carnet.ledger.models import JournalTransaction
from carnet.ledger.selectors import balance
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships.services import membership_sell
from carnet.passes.models import Pass
from carnet.passes.packages.ending import pass_refund, pass_transfer, passes_expire
from carnet.passes.redeeming.redemption import still_deferred
from carnet.passes.selectors import pass_invoices
from carnet.scheduling.tests.factories import clinic_set

from .factories import at, membership_template, package_template, sold_package

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {"fd": front_desk, "admin": admin_staff, "cat": catalog, "patient": make_patient()}


def _plan(s, **fields):
    """300.00 in 3 monthly instalments for 6 sessions; the first invoiced and paid."""
    template = package_template(
        s["cat"],
        price=30000,
        quantity=6,
        instalments=3,
        expiry_value=1,
        expiry_unit="months",
        **fields,
    )
    sold = sold_package(s["fd"], s["patient"], template, paid=False)
    [first] = pass_invoices(sold)
    payment_receive(
        actor=s["fd"].user,
        patient=s["patient"],
        method="cash",
        amount_minor=first.total_minor,
        allocations=[(first, first.total_minor)],
    )
    sold.refresh_from_db()
    return sold


def _deferred() -> int:
    return balance(accounts.DEFERRED_PACKAGES)  # in its normal sign: credits less debits


def test_value_still_deferred_is_deferred_less_recognised_never_the_whole_plan(s):
    sold = _plan(s)
    assert (sold.net_minor, sold.deferred_minor) == (30000, 10000)
    assert still_deferred(sold) == 10000 == _deferred()


def test_a_plan_package_expiring_before_its_last_instalment_books_only_what_was_deferred(s):
    sold = _plan(s)
    with clock.frozen(
        at("2026-06-02", "10:00")
    ):  # expired on 2026-06-01; the 2nd instalment was due then too
        assert passes_expire() == 1
    breakage = JournalTransaction.objects.get(kind="pass_expired")
    assert (
        -sum(p.amount for p in breakage.postings.all() if p.account.code == accounts.BREAKAGE)
        == 10000
    )
    assert _deferred() == 0  # not −200.00
    sold.refresh_from_db()
    assert sold.recognised_minor == sold.deferred_minor == 10000
    assert_ledger_ok()


def test_instalments_not_invoiced_are_cancelled_when_a_plan_package_expires(s):
    sold = _plan(s)
    with clock.frozen(at("2026-06-02", "10:00")):
        # The job issues due instalments first, then expires: the ended plan bills nothing more.
        passes_daily()
    with clock.frozen(at("2026-08-02", "10:00")):
        passes_daily()
    rows = list(sold.pass_invoices.order_by("seq"))
    assert [r.invoice_id is not None for r in rows] == [True, True, False]
    assert rows[2].skipped and rows[2].next_attempt_on is None
    assert len(pass_invoices(sold)) == 2
    assert _deferred() == 0
    assert_ledger_ok()


def test_instalments_not_invoiced_are_cancelled_when_a_plan_package_is_refunded(s):
    sold = _plan(s)
    pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=5000)
    rows = list(sold.pass_invoices.order_by("seq"))
    assert [r.skipped for r in rows] == [False, True, True]
    with clock.frozen(at("2026-07-02", "10:00")):
        passes_daily()
    assert len(pass_invoices(sold)) == 1  # nothing more billed after the refund
    assert _deferred() == 0
    assert_ledger_ok()


def test_a_plan_package_is_transferred_only_once_every_instalment_is_invoiced_and_paid(s):
    """SPEC 9.5 with a payment plan: refused while instalments are owed or not invoiced yet, so a
    transfer never leaves instalments behind; once all are paid, the whole deferred value moves."""
    sold = _plan(s, transferable=True)
    Pass.objects.filter(pk=sold.pk).update(
        expires_on=None
    )  # set-up: a plan that outlives its last instalment
    sold.refresh_from_db()
    other = make_patient()
    with pytest.raises(Conflict) as refused:
        pass_transfer(actor=s["admin"].user, sold_pass=sold, to_patient=other)
    assert refused.value.code == "not_paid"
    for day in ("2026-06-01", "2026-07-01"):
        with clock.frozen(at(day, "09:00")):
            passes_daily()
    for invoice in pass_invoices(sold)[1:]:
        payment_receive(
            actor=s["fd"].user,
            patient=s["patient"],
            method="cash",
            amount_minor=invoice.total_minor,
            allocations=[(invoice, invoice.total_minor)],
        )
    sold.refresh_from_db()
    new = pass_transfer(actor=s["admin"].user, sold_pass=sold, to_patient=other)
    assert new.deferred_minor == 30000 == _deferred()
    assert_ledger_ok()


# ---------------------------------------------------------------- frozen terms (SPEC 5.2)


def test_later_instalments_use_the_taxes_copied_at_sale(s):
    """An admin adding a 13 % tax to the template later does not change packages already sold
    (it was 100 + 113 + 113)."""
    sold = _plan(s)
    template = sold.template
    template.taxes.add(s["cat"]["tax"])  # 13 %
    with clock.frozen(at("2026-07-02", "10:00")):
        passes_daily()
    assert [i.total_minor for i in pass_invoices(sold)] == [10000, 10000, 10000]
    # A package sold after the change has the tax.
    later = sold_package(s["fd"], make_patient(), template, paid=False)
    assert pass_invoices(later)[0].total_minor == 11300
    assert_ledger_ok()


def test_membership_cycles_use_the_taxes_copied_at_sale(s):
    template = membership_template(s["cat"], price=6000)
    sold = membership_sell(
        actor=s["fd"].user, patient=s["patient"], template=template, start_date=dt.date(2026, 5, 1)
    )
    template.taxes.add(s["cat"]["tax"])
    with clock.frozen(at("2026-07-02", "10:00")):
        passes_daily()
    sold = Pass.objects.get(pk=sold.pk)
    assert {i.total_minor for i in pass_invoices(sold)} == {6000}
    assert len(pass_invoices(sold)) == 3
