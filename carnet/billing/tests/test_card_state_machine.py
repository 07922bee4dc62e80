"""A Hypothesis state machine over card charges, refunds, lost answers, crashes and reconciliation
(SPEC 3.4): after every step, every unit of money the gateway moved is either recorded in Carnet
or belongs to an attempt still waiting for reconciliation; after reconciliation, exactly recorded.
Budget: 12 examples of up to 14 steps (about 30 s on a 2-core machine)."""

import datetime as dt
import itertools

import pytest
from django.db.models import Sum
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from carnet.billing import card_attempts
from carnet.billing.models import CardAttempt, Payment, Refund
from carnet.billing.payments import payment_receive, payment_refund
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import ExampleRollback, make_catalog, make_patient, make_staff
from carnet.core.errors import CarnetError
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge, TestGatewayRefund
from carnet.gateway.services import card_store

_keys = itertools.count()


class Crash(BaseException):
    pass


class CardMoneyMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.atomic = ExampleRollback().__enter__()
        self.staff = make_staff(AccessLevel.ADMIN_BILLING)
        self.category = make_catalog()["income_category"]
        self.patient = make_patient()
        self.cards = {
            kind: card_store(
                actor=self.staff.user,
                patient=self.patient,
                number=number,
                exp_month=12,
                exp_year=2040,
                cvc="123",
                holder="Pat Test",
            )
            for kind, number in (
                ("good", "4242424242424242"),
                ("lost", "4000000000000770"),
                ("declined", "4000000000000002"),
            )
        }
        self.crash_next = False
        self.real_charge_record, self.real_refund_record = (
            card_attempts.charge_record,
            card_attempts.refund_record,
        )

        def maybe_crash(real):
            def record(*args, **kwargs):
                if self.crash_next:
                    self.crash_next = False
                    raise Crash()
                return real(*args, **kwargs)

            return record

        card_attempts.charge_record = maybe_crash(self.real_charge_record)
        card_attempts.refund_record = maybe_crash(self.real_refund_record)

    def teardown(self):
        if hasattr(self, "atomic"):
            card_attempts.charge_record, card_attempts.refund_record = (
                self.real_charge_record,
                self.real_refund_record,
            )
            self.atomic.__exit__(None, None, None)

    def _run(self, call, crash: bool):
        self.crash_next = crash
        try:
            call()
        except (CarnetError, Crash):
            pass
        finally:
            self.crash_next = False

    @rule(
        amount=st.integers(1, 20000),
        kind=st.sampled_from(["good", "lost", "declined"]),
        crash=st.booleans(),
        to_invoice=st.booleans(),
    )
    def charge(self, amount, kind, crash, to_invoice):
        allocations = []
        if to_invoice:
            invoice = manual_invoice(self.staff, self.patient, amount, category=self.category)
            allocations = [(invoice, amount)]
        self._run(
            lambda: payment_receive(
                actor=self.staff.user,
                patient=self.patient,
                method="card_gateway",
                amount_minor=amount,
                card=self.cards[kind],
                allocations=allocations,
                idempotency_key=f"sm-{next(_keys)}",
            ),
            crash,
        )

    @rule(data=st.data(), crash=st.booleans())
    def refund(self, data, crash):
        payments = [
            p
            for p in Payment.objects.filter(method="card_gateway").order_by("pk")
            if p.unapplied_minor
        ]
        if not payments:
            return
        payment = data.draw(st.sampled_from(payments))
        amount = data.draw(st.integers(1, payment.unapplied_minor))
        self._run(
            lambda: payment_refund(
                actor=self.staff.user,
                payment=payment,
                amount_minor=amount,
                idempotency_key=f"sm-r-{next(_keys)}",
            ),
            crash,
        )

    @rule()
    def reconcile(self):
        card_attempts.attempts_reconcile(older_than=dt.timedelta(0))
        assert not CardAttempt.objects.filter(status__in=card_attempts.OPEN).exists()
        assert self._gateway() == self._recorded()
        assert_ledger_ok()

    def _gateway(self):
        return (
            TestGatewayCharge.objects.aggregate(s=Sum("amount_minor"))["s"] or 0,
            TestGatewayRefund.objects.aggregate(s=Sum("amount_minor"))["s"] or 0,
        )

    def _recorded(self):
        return (
            Payment.objects.filter(method="card_gateway").aggregate(s=Sum("amount_minor"))["s"]
            or 0,
            Refund.objects.filter(method="card_gateway").aggregate(s=Sum("amount_minor"))["s"] or 0,
        )

    @invariant()
    def gateway_money_is_recorded_or_awaiting_reconciliation(self):
        if not hasattr(self, "atomic"):
            return
        open_keys = set(
            CardAttempt.objects.filter(status__in=card_attempts.OPEN).values_list(
                "gateway_key", flat=True
            )
        )
        charged = (
            TestGatewayCharge.objects.exclude(key__in=open_keys).aggregate(s=Sum("amount_minor"))[
                "s"
            ]
            or 0
        )
        refunded = (
            TestGatewayRefund.objects.exclude(key__in=open_keys).aggregate(s=Sum("amount_minor"))[
                "s"
            ]
            or 0
        )
        assert (charged, refunded) == self._recorded()
        for payment in Payment.objects.all():
            assert payment.unapplied_minor >= 0


@pytest.mark.django_db
def test_card_money_state_machine():
    run_state_machine_as_test(
        CardMoneyMachine,
        settings=hsettings(max_examples=12, stateful_step_count=14, deadline=None, database=None),
    )
