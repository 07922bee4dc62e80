"""Billing as a state machine (SPEC 3.1–3.5): random invoices, sales, payments, credit, unapply,
refunds, deletions and gateway failures over two patients, checked after every step against
a plain model of what each patient owes and holds as credit, and against every ledger invariant.

Each example runs in its own savepoint inside the test's transaction, rolled back in teardown,
so examples never see each other (same pattern as the ledger's machine; works on SQLite and
PostgreSQL alike).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

from django.db.models import Q, Sum
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from carnet.billing import card_attempts
from carnet.billing.invoicing import LineInput, invoice_create, invoice_delete
from carnet.billing.models import Allocation, CardAttempt, Invoice, InvoiceLine, Payment, Refund
from carnet.billing.payments import (
    allocation_unapply,
    credit_apply,
    payment_apply,
    payment_receive,
    payment_refund,
)
from carnet.billing.selectors import amount_owing, credit_balance
from carnet.clinic.models import IncomeCategory, Product, Tax
from carnet.clinic.selectors import clinic_get
from carnet.conftest import ExampleRollback, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import CarnetError
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge, TestGatewayRefund
from carnet.gateway.services import card_store
from carnet.ledger import accounts
from carnet.ledger.invariants import discover, run_all
from carnet.ledger.models import JournalTransaction, Posting
from carnet.ledger.selectors import balance

CARDS = {
    "good": "4242424242424242",
    "declined": "4000000000000002",
    "network_error": "4000000000000119",
    "lost_response": "4000000000000770",
}
RATES = ["13.000", "5.000", "9.975", "14.975", "7.125", "0.000", "100.000"]
TAX_SETS = [(), (0,), (1,), (0, 1)]
PATIENT = st.sampled_from([0, 1])
PRICE = st.one_of(st.just(0), st.integers(1, 200), st.integers(1, 50_000))
AMOUNT = st.one_of(st.integers(1, 100), st.integers(1, 60_000))
DISCOUNT_PCT = st.one_of(st.just(0), st.just(100), st.integers(0, 100))
# price, quantity, discount %, taxes, tax-inclusive, income category
LINE = st.tuples(
    PRICE,
    st.integers(1, 3),
    DISCOUNT_PCT,
    st.sampled_from(TAX_SETS),
    st.booleans(),
    st.sampled_from([0, 1]),
)
# price, stock, taxes, tax-inclusive
PRODUCT = st.tuples(PRICE, st.integers(0, 5), st.sampled_from(TAX_SETS), st.booleans())
_keys = itertools.count(1)


# ---------------------------------------------------------------- the model


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))  # x >= 0 here


def expected_line(gross: int, rates: list[str], inclusive: bool) -> tuple[int, int]:
    """(net, total) of a line, computed independently of carnet.billing.tax."""
    if not rates or gross == 0:
        return gross, gross
    if not inclusive:
        return gross, gross + sum(_half_up(Fraction(gross) * Fraction(r) / 100) for r in rates)
    return _half_up(Fraction(gross) * 100 / (100 + sum(Fraction(r) for r in rates))), gross


@dataclass
class Inv:
    pk: int
    patient: int
    total: int
    applied: int = 0
    deleted: bool = False
    sold: list[tuple[int, int]] = field(default_factory=list)  # (product index, quantity)

    @property
    def balance(self) -> int:
        return self.total - self.applied


@dataclass
class Pay:
    pk: int
    patient: int
    method: str
    amount: int
    received_at: dt.datetime
    gateway: bool
    applied: int = 0
    refunded: int = 0

    @property
    def unapplied(self) -> int:
        return self.amount - self.applied - self.refunded


@dataclass
class Alloc:
    pk: int
    payment: int
    invoice: int
    amount: int
    live: bool = True


class BillingMachine(RuleBasedStateMachine):
    """Drives the billing services; the model says what every patient owes and holds as credit."""

    @initialize(
        rates=st.lists(st.sampled_from(RATES), min_size=2, max_size=2),
        products=st.lists(PRODUCT, min_size=2, max_size=2),
    )
    def start(self, rates, products):
        self.atomic = ExampleRollback().__enter__()
        discover()
        clinic_get()
        self.desk = make_staff(AccessLevel.FRONT_DESK).user
        self.admin = make_staff(AccessLevel.ADMIN_BILLING).user
        self.full = make_staff(AccessLevel.FULL_ACCESS).user
        self.categories = [IncomeCategory.objects.create(name=f"Income {i}") for i in range(2)]
        self.rates = rates
        self.taxes = [
            Tax.objects.create(name=f"Tax {i}", rate=rate) for i, rate in enumerate(rates)
        ]
        self.products, self.product_specs, self.stock = [], [], []
        for i, (price, stock, tax_set, inclusive) in enumerate(products):
            product = Product.objects.create(
                name=f"Oil {i}",
                price_minor=price,
                stock=stock,
                tax_inclusive=inclusive,
                income_category=self.categories[i],
            )
            product.taxes.set([self.taxes[t] for t in tax_set])
            self.products.append(product)
            self.product_specs.append((price, tax_set, inclusive))
            self.stock.append(stock)
        self.patients = [make_patient(), make_patient()]
        year = clock.now().year + 2
        self.cards = {
            (i, kind): card_store(
                actor=self.desk,
                patient=patient,
                number=number,
                exp_month=12,
                exp_year=year,
                cvc="123",
                holder="Pat Test",
            )
            for i, patient in enumerate(self.patients)
            for kind, number in CARDS.items()
        }
        self.invoices: dict[int, Inv] = {}
        self.payments: dict[int, Pay] = {}
        self.allocations: dict[int, Alloc] = {}
        self.cash: dict[str, int] = {}  # cash/clearing account -> expected balance
        self.gateway_net = 0  # charged through the gateway minus refunded through it
        self.income = 0  # revenue + tax payable of the live invoices

    def teardown(self):
        if hasattr(self, "atomic"):
            self.atomic.__exit__(None, None, None)

    # ------------------------------------------------------------ helpers

    def _owing(self, who: int) -> int:
        return sum(i.balance for i in self.invoices.values() if i.patient == who and not i.deleted)

    def _credit(self, who: int) -> int:
        return sum(p.unapplied for p in self.payments.values() if p.patient == who)

    def _open(self, who: int) -> list[Inv]:
        return [
            i
            for i in self.invoices.values()
            if i.patient == who and not i.deleted and i.balance > 0
        ]

    def _with_credit(self, who: int | None = None) -> list[Pay]:
        return [
            p
            for p in self.payments.values()
            if p.unapplied > 0 and (who is None or p.patient == who)
        ]

    def _can_apply(self) -> bool:
        return any(self._open(p.patient) for p in self._with_credit())

    def _draw_allocations(self, data, who: int, amount: int) -> list[tuple[Inv, int]]:
        """Random allocations to the patient's open invoices, each within its balance,
        all within amount."""
        chosen, left = [], amount
        for inv in self._open(who):
            if left and data.draw(st.booleans(), label=f"apply to invoice {inv.pk}"):
                take = data.draw(st.integers(1, min(inv.balance, left)), label="amount")
                chosen.append((inv, take))
                left -= take
        return chosen

    @staticmethod
    def _pick(data, items: list, label: str):
        """Draw one of the model's records by id, so a failure report names it by its id."""
        by_pk = {item.pk: item for item in items}
        return by_pk[data.draw(st.sampled_from(sorted(by_pk)), label=f"{label} id")]

    def _snapshot(self) -> tuple:
        """Everything a refused operation must leave untouched."""
        return (
            tuple(
                Payment.objects.order_by("pk").values_list(
                    "pk", "amount_minor", "applied_minor", "refunded_minor"
                )
            ),
            tuple(
                Invoice.objects.order_by("pk").values_list(
                    "pk", "total_minor", "applied_minor", "deleted_at"
                )
            ),
            tuple(Allocation.objects.order_by("pk").values_list("pk", "unapplied_at")),
            Refund.objects.count(),
            JournalTransaction.objects.count(),
            Posting.objects.count(),
            TestGatewayCharge.objects.count(),
            TestGatewayRefund.objects.count(),
            # A refused card attempt is itself recorded (failed or unknown),
            # with its log row: that is the record.
            ActivityLog.objects.exclude(verb__startswith="card_").count(),
            tuple(Product.objects.order_by("pk").values_list("stock", flat=True)),
        )

    def _refused(self, code: str | tuple[str, ...], call) -> CarnetError:
        """`call` must raise a CarnetError with `code` and change nothing."""
        codes = (code,) if isinstance(code, str) else code
        before = self._snapshot()
        try:
            call()
        except CarnetError as exc:
            assert exc.code in codes, f"refused with {exc.code!r} ({exc.message}), expected {codes}"
            assert self._snapshot() == before, "a refused operation changed something"
            return exc
        raise AssertionError(f"expected a refusal with {codes}, but the operation went through")

    def _add_cash(self, method: str, amount: int) -> None:
        code = accounts.cash(method)
        self.cash[code] = self.cash.get(code, 0) + amount

    def _record_payment(
        self,
        payment: Payment,
        who: int,
        method: str,
        amount: int,
        allocations: list[tuple[Inv, int]],
    ) -> None:
        assert (payment.patient_id, payment.method, payment.amount_minor) == (
            self.patients[who].pk,
            method,
            amount,
        )
        gateway = method == Payment.Method.CARD_GATEWAY
        assert bool(payment.gateway_charge_id) == gateway
        pay = Pay(
            pk=payment.pk,
            patient=who,
            method=method,
            amount=amount,
            received_at=payment.received_at,
            gateway=gateway,
        )
        self.payments[pay.pk] = pay
        rows = list(Allocation.objects.filter(payment=payment).order_by("pk"))
        assert [(a.invoice_id, a.amount_minor) for a in rows] == [
            (inv.pk, take) for inv, take in allocations
        ]
        for row, (inv, take) in zip(rows, allocations, strict=True):
            self.allocations[row.pk] = Alloc(pk=row.pk, payment=pay.pk, invoice=inv.pk, amount=take)
            inv.applied += take
            pay.applied += take
        self._add_cash(method, amount)
        if gateway:
            self.gateway_net += amount

    def _record_invoice(
        self,
        invoice: Invoice,
        who: int,
        expected: list[tuple[int, int]],
        sold: list[tuple[int, int]],
    ) -> None:
        assert invoice.patient_id == self.patients[who].pk
        net, total = sum(n for n, _ in expected), sum(t for _, t in expected)
        assert (invoice.subtotal_minor, invoice.total_minor) == (net, total)
        assert invoice.subtotal_minor + invoice.tax_minor == invoice.total_minor
        lines = list(
            InvoiceLine.objects.filter(invoice=invoice)
            .order_by("pk")
            .values_list("net_minor", "total_minor")
        )
        assert lines == expected
        assert invoice.status == ("no_charge" if total == 0 else "unpaid")
        self.invoices[invoice.pk] = Inv(pk=invoice.pk, patient=who, total=total, sold=sold)
        self.income += total

    # ------------------------------------------------------------ invoices

    @rule(who=PATIENT, lines=st.lists(LINE, min_size=1, max_size=3))
    def create_invoice(self, who, lines):
        inputs, expected = [], []
        for i, (price, quantity, pct, tax_set, inclusive, category) in enumerate(lines):
            discount = price * quantity * pct // 100
            inputs.append(
                LineInput(
                    description=f"Line {i}",
                    unit_price_minor=price,
                    quantity=quantity,
                    adjustment_minor=discount,
                    income_category_id=self.categories[category].pk,
                    tax_ids=[self.taxes[t].pk for t in tax_set],
                    tax_inclusive=inclusive,
                )
            )
            expected.append(
                expected_line(
                    price * quantity - discount, [self.rates[t] for t in tax_set], inclusive
                )
            )
        invoice = invoice_create(actor=self.desk, patient=self.patients[who], lines=inputs)
        self._record_invoice(invoice, who, expected, sold=[])

    @rule(
        who=PATIENT,
        which=st.sampled_from([0, 1]),
        quantity=st.integers(1, 4),
        with_fee=st.booleans(),
    )
    def sell_product(self, who, which, quantity, with_fee):
        """A product line (stock goes down), maybe with a manual fee line;
        refused when out of stock."""
        price, tax_set, inclusive = self.product_specs[which]
        inputs = [LineInput(product_id=self.products[which].pk, quantity=quantity)]
        expected = [expected_line(price * quantity, [self.rates[t] for t in tax_set], inclusive)]
        if with_fee:
            inputs.append(
                LineInput(
                    description="Fee",
                    unit_price_minor=500,
                    income_category_id=self.categories[0].pk,
                    tax_ids=[],
                )
            )
            expected.append((500, 500))
        call = lambda: invoice_create(actor=self.desk, patient=self.patients[who], lines=inputs)
        if quantity > self.stock[which]:
            self._refused("out_of_stock", call)
            return
        invoice = call()
        self.stock[which] -= quantity
        self._record_invoice(invoice, who, expected, sold=[(which, quantity)])

    @precondition(lambda self: any(not i.deleted for i in self.invoices.values()))
    @rule(data=st.data())
    def delete_invoice(self, data):
        live = [i for i in self.invoices.values() if not i.deleted]
        paid = [i for i in live if i.applied]
        if paid and data.draw(st.booleans(), label="one with payments applied"):
            live = paid
        inv = self._pick(data, live, "invoice")
        invoice = Invoice.objects.get(pk=inv.pk)
        if inv.applied:
            exc = self._refused(
                "invoice_has_payments", lambda: invoice_delete(actor=self.admin, invoice=invoice)
            )
            assert "Unapply" in exc.message
            return
        invoice_delete(actor=self.admin, invoice=invoice)
        inv.deleted = True
        self.income -= inv.total
        for which, quantity in inv.sold:
            self.stock[which] += quantity
        assert not any(a.live for a in self.allocations.values() if a.invoice == inv.pk)
        # Deleting twice is refused.
        self._refused("not_found", lambda: invoice_delete(actor=self.admin, invoice=invoice))

    # ------------------------------------------------------------ payments

    @rule(
        data=st.data(),
        who=PATIENT,
        method=st.sampled_from(["cash", "debit", "card_gateway"]),
        amount=AMOUNT,
        old=st.booleans(),
    )
    def receive_payment(self, data, who, method, amount, old):
        allocations = self._draw_allocations(data, who, amount)
        payment = payment_receive(
            actor=self.desk,
            patient=self.patients[who],
            method=method,
            amount_minor=amount,
            allocations=[(Invoice.objects.get(pk=inv.pk), take) for inv, take in allocations],
            card=self.cards[who, "good"] if method == "card_gateway" else None,
            idempotency_key=f"sm-pay-{next(_keys)}",
            received_at=clock.now() - dt.timedelta(days=2) if old else None,
        )
        self._record_payment(payment, who, method, amount, allocations)

    @precondition(lambda self: self._can_apply())
    @rule(data=st.data())
    def apply_payment(self, data):
        pay = self._pick(data, [p for p in self._with_credit() if self._open(p.patient)], "payment")
        inv = self._pick(data, self._open(pay.patient), "invoice")
        take = data.draw(st.integers(1, min(pay.unapplied, inv.balance)), label="amount")
        allocation = payment_apply(
            actor=self.desk,
            payment=Payment.objects.get(pk=pay.pk),
            invoice=Invoice.objects.get(pk=inv.pk),
            amount_minor=take,
        )
        assert (allocation.payment_id, allocation.invoice_id, allocation.amount_minor) == (
            pay.pk,
            inv.pk,
            take,
        )
        self.allocations[allocation.pk] = Alloc(
            pk=allocation.pk, payment=pay.pk, invoice=inv.pk, amount=take
        )
        pay.applied += take
        inv.applied += take

    @precondition(lambda self: self._can_apply())
    @rule(data=st.data())
    def apply_credit(self, data):
        who = data.draw(
            st.sampled_from([w for w in (0, 1) if self._with_credit(w) and self._open(w)]),
            label="patient",
        )
        inv = self._pick(data, self._open(who), "invoice")
        credit = self._credit(who)
        amount = data.draw(
            st.one_of(st.none(), st.integers(1, min(credit, inv.balance))), label="amount"
        )
        allocations = credit_apply(
            actor=self.desk,
            patient=self.patients[who],
            invoice=Invoice.objects.get(pk=inv.pk),
            amount_minor=amount,
        )
        # Oldest payments first: by received_at, then by id.
        left, expected = min(credit, inv.balance) if amount is None else amount, []
        for pay in sorted(self._with_credit(who), key=lambda p: (p.received_at, p.pk)):
            if not left:
                break
            take = min(left, pay.unapplied)
            expected.append((pay.pk, take))
            left -= take
        assert [(a.payment_id, a.amount_minor) for a in allocations] == expected
        for allocation in allocations:
            self.allocations[allocation.pk] = Alloc(
                pk=allocation.pk,
                payment=allocation.payment_id,
                invoice=inv.pk,
                amount=allocation.amount_minor,
            )
            self.payments[allocation.payment_id].applied += allocation.amount_minor
            inv.applied += allocation.amount_minor

    @precondition(lambda self: any(a.live for a in self.allocations.values()))
    @rule(data=st.data())
    def unapply(self, data):
        alloc = self._pick(data, [a for a in self.allocations.values() if a.live], "allocation")
        pay, inv = self.payments[alloc.payment], self.invoices[alloc.invoice]
        row = Allocation.objects.get(pk=alloc.pk)
        if clock.now() - pay.received_at > dt.timedelta(hours=24):
            # Older than 24 hours: Administrative/All Billing may not, Full Access may.
            self._refused(
                "not_allowed", lambda: allocation_unapply(actor=self.admin, allocation=row)
            )
        allocation_unapply(actor=self.full, allocation=row)
        alloc.live = False
        pay.applied -= alloc.amount
        inv.applied -= alloc.amount
        self._refused("not_found", lambda: allocation_unapply(actor=self.full, allocation=row))

    @precondition(lambda self: bool(self._with_credit()))
    @rule(
        data=st.data(),
        method=st.sampled_from([None, "cash", "debit", "etransfer", "other", "card_gateway"]),
    )
    def refund(self, data, method):
        pay = self._pick(data, self._with_credit(), "payment")
        take = data.draw(st.integers(1, pay.unapplied), label="amount")
        payment = Payment.objects.get(pk=pay.pk)
        call = lambda: payment_refund(
            actor=self.admin,
            payment=payment,
            amount_minor=take,
            method=method,
            idempotency_key=f"sm-refund-{next(_keys)}",
        )
        to = method or pay.method
        if to == "card_gateway" and not pay.gateway:
            self._refused("invalid", call)
            return
        refund = call()
        assert (refund.amount_minor, refund.method, bool(refund.gateway_refund_id)) == (
            take,
            to,
            to == "card_gateway",
        )
        pay.refunded += take
        self._add_cash(to, -take)
        if to == "card_gateway":
            self.gateway_net -= take

    # ------------------------------------------------------------ the gateway

    @rule(
        data=st.data(),
        who=PATIENT,
        kind=st.sampled_from(["declined", "network_error", "lost_response"]),
        amount=AMOUNT,
    )
    def gateway_failure(self, data, who, kind, amount):
        """A declined card or a network error: refused, nothing recorded here or at the gateway, and
        the same on a retry. A lost response: see below."""
        if kind == "lost_response":
            self._lost_response_then_retry(data, who, amount)
            return
        allocations = [
            (Invoice.objects.get(pk=inv.pk), take)
            for inv, take in self._draw_allocations(data, who, amount)
        ]
        key = f"sm-fail-{next(_keys)}"
        call = lambda: payment_receive(
            actor=self.desk,
            patient=self.patients[who],
            method="card_gateway",
            amount_minor=amount,
            allocations=allocations,
            card=self.cards[who, kind],
            idempotency_key=key,
        )
        code = "card_declined" if kind == "declined" else "gateway_unavailable"
        self._refused(code, call)
        self._refused(code, call)  # a retry with the same key fails the same way
        # A network error leaves the attempt unknown (its invoices reserved) until reconciliation
        # asks the gateway, which has no charge: then it is failed and the reservation released.
        for attempt in CardAttempt.objects.filter(status__in=card_attempts.OPEN):
            assert card_attempts.attempt_resolve(attempt) == "failed"

    def _lost_response_then_retry(self, data, who, amount):
        """The charge happens but its answer is lost: nothing recorded;
        the retry with the same key records it once."""
        allocations = self._draw_allocations(data, who, amount)
        key = f"sm-lost-{next(_keys)}"
        charges, payments = TestGatewayCharge.objects.count(), Payment.objects.count()
        call = lambda: payment_receive(
            actor=self.desk,
            patient=self.patients[who],
            method="card_gateway",
            amount_minor=amount,
            allocations=[(Invoice.objects.get(pk=inv.pk), take) for inv, take in allocations],
            card=self.cards[who, "lost_response"],
            idempotency_key=key,
        )
        try:
            call()
        except CarnetError as exc:
            assert exc.code == "gateway_unavailable"
        else:
            raise AssertionError("a lost response must surface as gateway_unavailable")
        assert Payment.objects.count() == payments
        assert TestGatewayCharge.objects.count() == charges + 1
        payment = call()
        assert TestGatewayCharge.objects.count() == charges + 1
        assert TestGatewayCharge.objects.filter(charge_id=payment.gateway_charge_id).count() == 1
        self._record_payment(payment, who, "card_gateway", amount, allocations)

    # ------------------------------------------------------------ refusals

    def _refusals(self) -> list[str]:
        live = [i for i in self.invoices.values() if not i.deleted]
        kinds = ["receive_more_applied_than_paid", "zero_amounts"]
        if any(i.balance for i in live):
            kinds.append("one_invoice_twice")
        if self._with_credit() and any(
            i.patient == p.patient for p in self._with_credit() for i in live
        ):
            kinds.append("over_apply")
        if self.payments:
            kinds.append("over_refund")
        if live:
            kinds.append("over_credit")
        if any(i.deleted for i in self.invoices.values()):
            kinds.append("apply_to_deleted_invoice")
        if self.payments and self.invoices:
            kinds.append("apply_to_other_patients_invoice")
        return kinds

    @rule(data=st.data(), extra=st.integers(1, 10_000))
    def refused_operation(self, data, extra):
        """Invalid operations: each refused with its CarnetError code,
        leaving everything unchanged."""
        kind = data.draw(st.sampled_from(self._refusals()), label="refusal")
        desk, admin = self.desk, self.admin
        if (
            kind == "over_apply"
        ):  # more than the invoice's balance, or than the payment's unapplied amount
            pay = self._pick(
                data,
                [
                    p
                    for p in self._with_credit()
                    if any(i.patient == p.patient and not i.deleted for i in self.invoices.values())
                ],
                "payment",
            )
            inv = self._pick(
                data,
                [i for i in self.invoices.values() if i.patient == pay.patient and not i.deleted],
                "invoice",
            )
            over = data.draw(st.sampled_from(["min", "max"]), label="over which")
            take = (min if over == "min" else max)(inv.balance, pay.unapplied) + extra
            payment, invoice = Payment.objects.get(pk=pay.pk), Invoice.objects.get(pk=inv.pk)
            self._refused(
                "over_apply",
                lambda: payment_apply(
                    actor=desk, payment=payment, invoice=invoice, amount_minor=take
                ),
            )
        elif kind == "over_refund":
            pay = self._pick(data, list(self.payments.values()), "payment")
            method = data.draw(st.sampled_from([None, "cash", "other"]), label="method")
            payment = Payment.objects.get(pk=pay.pk)
            self._refused(
                "refund_exceeds_unapplied",
                lambda: payment_refund(
                    actor=admin, payment=payment, amount_minor=pay.unapplied + extra, method=method
                ),
            )
        elif kind == "over_credit":
            inv = self._pick(data, [i for i in self.invoices.values() if not i.deleted], "invoice")
            credit = self._credit(inv.patient)
            invoice, patient = Invoice.objects.get(pk=inv.pk), self.patients[inv.patient]
            code = "nothing_owing" if not inv.balance else "not_enough_credit"
            self._refused(
                code,
                lambda: credit_apply(
                    actor=desk, patient=patient, invoice=invoice, amount_minor=credit + extra
                ),
            )
            if inv.balance < credit:  # enough credit, but more than the invoice owes
                wanted = data.draw(st.integers(inv.balance + 1, credit), label="amount")
                code = "nothing_owing" if not inv.balance else "over_apply"
                self._refused(
                    code,
                    lambda: credit_apply(
                        actor=desk, patient=patient, invoice=invoice, amount_minor=wanted
                    ),
                )
            if (
                not inv.balance
            ):  # nothing owing: "apply all the credit it takes" has nothing to apply
                self._refused(
                    "nothing_owing",
                    lambda: credit_apply(actor=desk, patient=patient, invoice=invoice),
                )
        elif kind == "one_invoice_twice":
            # Each allocation fits the balance, together they do not. Cash: refused, nothing
            # recorded. A card is charged before applying; then the whole payment stays as credit.
            inv = self._pick(
                data, [i for i in self.invoices.values() if not i.deleted and i.balance], "invoice"
            )
            invoice, who = Invoice.objects.get(pk=inv.pk), inv.patient
            first = data.draw(st.integers(1, inv.balance), label="first")
            second = data.draw(st.integers(inv.balance - first + 1, inv.balance), label="second")
            allocations = [(invoice, first), (invoice, second)]
            self._refused(
                "over_apply",
                lambda: payment_receive(
                    actor=desk,
                    patient=self.patients[who],
                    method="cash",
                    amount_minor=first + second,
                    allocations=allocations,
                ),
            )
            payment = payment_receive(
                actor=desk,
                patient=self.patients[who],
                method="card_gateway",
                amount_minor=first + second + extra,
                allocations=allocations,
                card=self.cards[who, "good"],
                idempotency_key=f"sm-twice-{next(_keys)}",
            )
            self._record_payment(payment, who, "card_gateway", first + second + extra, [])
        elif kind == "apply_to_deleted_invoice":
            inv = self._pick(data, [i for i in self.invoices.values() if i.deleted], "invoice")
            invoice, patient = Invoice.objects.get(pk=inv.pk), self.patients[inv.patient]
            self._refused(
                "invoice_deleted",
                lambda: payment_receive(
                    actor=desk,
                    patient=patient,
                    method="cash",
                    amount_minor=extra,
                    allocations=[(invoice, 1)],
                ),
            )
            with_credit = self._with_credit(inv.patient)
            if with_credit:
                payment = Payment.objects.get(pk=with_credit[0].pk)
                self._refused(
                    "invoice_deleted",
                    lambda: payment_apply(
                        actor=desk, payment=payment, invoice=invoice, amount_minor=1
                    ),
                )
        elif kind == "apply_to_other_patients_invoice":
            pay = self._pick(data, list(self.payments.values()), "payment")
            others = [
                i
                for i in self.invoices.values()
                if i.patient != pay.patient and not i.deleted and i.balance
            ]
            if others:
                invoice = Invoice.objects.get(pk=others[0].pk)
                payment = Payment.objects.get(pk=pay.pk)
                self._refused(
                    "invalid",
                    lambda: payment_apply(
                        actor=desk, payment=payment, invoice=invoice, amount_minor=1
                    ),
                )
                self._refused(
                    "invalid",
                    lambda: payment_receive(
                        actor=desk,
                        patient=self.patients[pay.patient],
                        method="card_gateway",
                        amount_minor=extra,
                        allocations=[(invoice, 1)],
                        card=self.cards[pay.patient, "good"],
                        idempotency_key=f"sm-other-{next(_keys)}",
                    ),
                )
        elif kind == "zero_amounts":
            who = data.draw(PATIENT, label="patient")
            self._refused(
                "invalid",
                lambda: payment_receive(
                    actor=desk, patient=self.patients[who], method="cash", amount_minor=0
                ),
            )
            if self.payments:
                pay = self._pick(data, list(self.payments.values()), "payment")
                payment = Payment.objects.get(pk=pay.pk)
                self._refused(
                    "invalid", lambda: payment_refund(actor=admin, payment=payment, amount_minor=0)
                )
                open_ = self._open(pay.patient)
                if open_:
                    invoice = Invoice.objects.get(pk=open_[0].pk)
                    self._refused(
                        "invalid",
                        lambda: payment_apply(
                            actor=desk, payment=payment, invoice=invoice, amount_minor=0
                        ),
                    )
            self._refused(
                "invalid",
                lambda: invoice_create(
                    actor=desk,
                    patient=self.patients[who],
                    lines=[
                        LineInput(
                            description="Too much off",
                            unit_price_minor=100,
                            adjustment_minor=101,
                            income_category_id=self.categories[0].pk,
                            tax_ids=[],
                        )
                    ],
                ),
            )
        else:  # receive_more_applied_than_paid: refused before any card is charged
            who = data.draw(PATIENT, label="patient")
            method = data.draw(st.sampled_from(["cash", "card_gateway"]), label="method")
            open_ = self._open(who)
            target = Invoice.objects.get(pk=open_[0].pk) if open_ else None
            allocations = [(target, extra + 1)] if target else []
            self._refused(
                "invalid",
                lambda: payment_receive(
                    actor=desk,
                    patient=self.patients[who],
                    method=method,
                    amount_minor=extra if target else 0,
                    allocations=allocations,
                    card=self.cards[who, "good"],
                    idempotency_key=f"sm-bad-{next(_keys)}",
                ),
            )

    # ------------------------------------------------------------ invariants

    @invariant()
    def ledger_invariants_hold(self):
        if not hasattr(self, "atomic"):
            return
        assert {name: problems for name, problems in run_all().items() if problems} == {}

    @invariant()
    def trial_balance_is_zero(self):
        if not hasattr(self, "atomic"):
            return
        totals = Posting.objects.aggregate(
            debits=Sum("amount", filter=Q(amount__gt=0)),
            credits=Sum("amount", filter=Q(amount__lt=0)),
        )
        assert int(totals["debits"] or 0) == -int(totals["credits"] or 0)

    @invariant()
    def invoice_numbers_are_gap_free(self):
        if not hasattr(self, "atomic"):
            return
        numbers = sorted(
            Invoice.objects.values_list("number", flat=True)
        )  # deleted ones keep theirs
        if numbers:
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))

    @invariant()
    def patients_match_the_model(self):
        if not hasattr(self, "atomic"):
            return
        for who, patient in enumerate(self.patients):
            owing, credit = self._owing(who), self._credit(who)
            assert amount_owing(patient) == owing, f"patient {who}: owing"
            assert credit_balance(patient) == credit, f"patient {who}: credit"
            assert balance(accounts.AR, patient_id=patient.pk) == owing
            assert balance(accounts.PATIENT_CREDIT, patient_id=patient.pk) == credit
            assert owing >= 0 and credit >= 0

    @invariant()
    def documents_match_the_model(self):
        if not hasattr(self, "atomic"):
            return
        invoices = {
            pk: (total, applied, deleted is not None)
            for pk, total, applied, deleted in Invoice.objects.values_list(
                "pk", "total_minor", "applied_minor", "deleted_at"
            )
        }
        assert invoices == {i.pk: (i.total, i.applied, i.deleted) for i in self.invoices.values()}
        assert all(0 <= applied <= total for total, applied, _ in invoices.values()), (
            "an invoice is over-applied"
        )
        payments = {
            pk: (amount, applied, refunded)
            for pk, amount, applied, refunded in Payment.objects.values_list(
                "pk", "amount_minor", "applied_minor", "refunded_minor"
            )
        }
        assert payments == {p.pk: (p.amount, p.applied, p.refunded) for p in self.payments.values()}
        assert all(
            applied >= 0 and refunded >= 0 and applied + refunded <= amount
            for amount, applied, refunded in payments.values()
        ), "a payment is overspent"
        live = set(
            Allocation.objects.filter(unapplied_at__isnull=True).values_list("pk", flat=True)
        )
        assert live == {a.pk for a in self.allocations.values() if a.live}

    @invariant()
    def money_accounts_match_the_model(self):
        if not hasattr(self, "atomic"):
            return
        for code in {
            accounts.cash(m) for m in ("cash", "debit", "etransfer", "other", "card_gateway")
        }:
            assert balance(code) == self.cash.get(code, 0), code
        income = sum(balance(accounts.revenue(c.pk)) for c in self.categories)
        income += sum(balance(accounts.tax_payable(t.pk)) for t in self.taxes)
        assert income == self.income
        charged = TestGatewayCharge.objects.aggregate(
            amount=Sum("amount_minor"), refunded=Sum("refunded_minor")
        )
        assert int(charged["amount"] or 0) - int(charged["refunded"] or 0) == self.gateway_net
        assert (
            list(
                Product.objects.filter(pk__in=[p.pk for p in self.products])
                .order_by("pk")
                .values_list("stock", flat=True)
            )
            == self.stock
        )


def test_billing_state_machine(db):
    run_state_machine_as_test(
        BillingMachine,
        settings=hsettings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            # Every step hits the database; long sequences draw a lot of data.
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
                HealthCheck.function_scoped_fixture,
            ],
        ),
    )
