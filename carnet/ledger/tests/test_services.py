import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from carnet.conftest import ExampleRollback
from carnet.core import clock
from carnet.ledger import accounts as acc
from carnet.ledger.invariants import run_all
from carnet.ledger.models import Account, JournalTransaction, Posting
from carnet.ledger.selectors import balance
from carnet.ledger.services import (
    AlreadyReversed,
    LedgerUnbalanced,
    LiabilityOverdrawn,
    Line,
    transaction_post,
    transaction_reverse,
)

AT = dt.datetime(2025, 3, 1, 15, 0, tzinfo=dt.UTC)


def invoice_lines(patient_id=7, price=10000, tax=1300):
    return [
        Line(acc.AR, debit=price + tax, patient_id=patient_id),
        Line(acc.revenue(1), credit=price),
        Line(acc.tax_payable(1), credit=tax),
    ]


@pytest.fixture
def user(db):
    return get_user_model().objects.create(username="source-doc")


def test_balanced_transaction_is_posted_with_signed_amounts(user):
    with clock.frozen(AT):
        txn = transaction_post(
            lines=invoice_lines(), kind="invoice_issued", source=user, memo="INV-1"
        )
    assert (txn.kind, txn.memo, txn.at, txn.source_type, txn.source_id) == (
        "invoice_issued",
        "INV-1",
        AT,
        "auth.user",
        str(user.pk),
    )
    rows = sorted(txn.postings.values_list("account__code", "amount", "patient_id"))
    assert rows == [(acc.AR, 11300, 7), ("revenue:1", -10000, None), ("tax_payable:1", -1300, None)]
    assert Account.objects.get(code=acc.AR).type == acc.ASSET
    assert Account.objects.get(code="tax_payable:1").type == acc.LIABILITY


def test_accounts_are_created_once_on_first_use(db):
    transaction_post(lines=invoice_lines(), kind="invoice_issued")
    transaction_post(lines=invoice_lines(patient_id=8), kind="invoice_issued")
    assert Account.objects.filter(code=acc.AR).count() == 1
    assert Account.objects.count() == 3


def test_postings_find_their_accounts_by_code_and_a_new_account_s_rows_follow(db):
    """Postings are inserted by account code (the insert finds the ids): a transaction whose lines
    name an existing account and two new ones (one of them twice) posts every line once, and the
    second posting to the same accounts takes the one-statement path."""
    transaction_post(lines=invoice_lines(), kind="invoice_issued")
    lines = [
        Line(acc.AR, debit=500, patient_id=7),
        Line(acc.revenue(2), credit=200),
        Line(acc.revenue(2), credit=100),
        Line(acc.tax_payable(2), credit=200),
    ]
    for memo in ("first use", "again"):
        txn = transaction_post(lines=lines, kind="invoice_issued", memo=memo)
        rows = sorted(txn.postings.values_list("account__code", "amount", "patient_id"))
        assert rows == [
            (acc.AR, 500, 7),
            ("revenue:2", -200, None),
            ("revenue:2", -100, None),
            ("tax_payable:2", -200, None),
        ]
    assert Account.objects.filter(code="revenue:2").count() == 1
    assert Account.objects.count() == 5


def test_on_postgresql_one_transaction_is_one_statement_with_its_postings_and_guard(db):
    """Its insert, its postings' and the liability guard's read in one WITH (once the transaction's
    insert is compiled, by the first); an account's first use still lets its rows follow."""
    transaction_post(lines=invoice_lines(), kind="invoice_issued")  # compiles the insert
    loaded = [Line(acc.cash("cash"), debit=900), Line(acc.PATIENT_CREDIT, credit=900, patient_id=7)]
    transaction_post(lines=loaded, kind="loaded")
    spent = [
        Line(acc.PATIENT_CREDIT, debit=600, patient_id=7),
        Line(acc.revenue(1), credit=400),
        Line(acc.revenue(5), credit=200),  # its first use
    ]
    with CaptureQueriesContext(connection) as queries:
        txn = transaction_post(lines=spent, kind="spent", memo="two visits", at=AT)
    sent = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    if connection.vendor == "postgresql":
        assert sent[0].startswith('WITH txn AS (INSERT INTO "ledger_journaltransaction"')
        # + the accounts' read, the new one's get_or_create (read, insert), its row, the guard
        assert len(sent) == 6, "\n".join(q[:90] for q in sent)
    fresh = JournalTransaction.objects.get(pk=txn.pk)
    assert (fresh.kind, fresh.memo, fresh.at) == ("spent", "two visits", AT)
    assert txn._state.adding is False
    assert sorted(fresh.postings.values_list("account__code", "amount", "patient_id")) == [
        (acc.PATIENT_CREDIT, 600, 7),
        ("revenue:1", -400, None),
        ("revenue:5", -200, None),
    ]
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(LiabilityOverdrawn, match="Patient credit for patient 7"):
            transaction_post(lines=spent[:2] + [Line(acc.revenue(5), credit=200)], kind="spent")
    if connection.vendor == "postgresql":
        assert len([q for q in queries if "SAVEPOINT" not in q["sql"]]) == 1
    assert JournalTransaction.objects.filter(kind="spent").count() == 1
    assert balance(acc.PATIENT_CREDIT, patient_id=7) == 300  # 9.00 loaded, 6.00 spent


def test_zero_amount_lines_are_dropped(db):
    txn = transaction_post(lines=invoice_lines(tax=0), kind="invoice_issued")
    assert txn.postings.count() == 2
    assert not Posting.objects.filter(account__code="tax_payable:1").exists()


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="empty"),
        pytest.param([Line(acc.AR, patient_id=1), Line(acc.revenue(1))], id="all-zero"),
        pytest.param(
            [Line(acc.AR, debit=100, patient_id=1), Line(acc.revenue(1), credit=99)],
            id="unbalanced",
        ),
        pytest.param(
            [Line(acc.AR, debit=-100, patient_id=1), Line(acc.revenue(1), credit=-100)],
            id="negative",
        ),
        pytest.param(
            [Line(acc.AR, debit=True, patient_id=1), Line(acc.revenue(1), credit=1)], id="bool"
        ),
        pytest.param(
            [Line(acc.AR, debit=1.0, patient_id=1), Line(acc.revenue(1), credit=1)], id="float"
        ),
        pytest.param(
            [Line(acc.AR, debit=5, credit=5, patient_id=1), Line(acc.revenue(1), credit=0)],
            id="both-sides",
        ),
        pytest.param(
            [Line("bogus", debit=5), Line(acc.revenue(1), credit=5)], id="unknown-account"
        ),
        pytest.param(
            [Line(acc.AR, debit=5), Line(acc.revenue(1), credit=5)], id="ar-without-patient"
        ),
        pytest.param(
            [Line(acc.AR, debit=5, patient_id=True), Line(acc.revenue(1), credit=5)],
            id="bool-patient",
        ),
        pytest.param([(acc.AR, 5, 0), (acc.revenue(1), 0, 5)], id="not-a-line"),
    ],
)
def test_bad_lines_are_refused_and_nothing_is_written(db, lines):
    with pytest.raises(LedgerUnbalanced) as refused:
        transaction_post(lines=lines, kind="invoice_issued")
    assert refused.value.code == "ledger_unbalanced"
    assert not JournalTransaction.objects.exists() and not Posting.objects.exists()


def test_other_bad_arguments_are_refused(db, user):
    with pytest.raises(ValueError):
        transaction_post(lines=invoice_lines(), kind="Invoice Issued")
    with pytest.raises(ValueError):
        transaction_post(lines=invoice_lines(), kind="x", at=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        transaction_post(
            lines=invoice_lines(), kind="x", source=get_user_model()(username="unsaved")
        )


def test_posting_joins_the_callers_transaction(db):
    with pytest.raises(RuntimeError), transaction.atomic():
        transaction_post(lines=invoice_lines(), kind="invoice_issued")
        raise RuntimeError("the caller fails after posting")
    assert not JournalTransaction.objects.exists() and not Posting.objects.exists()


def test_reversal_mirrors_the_original_and_keeps_its_source(user):
    original = transaction_post(lines=invoice_lines(), kind="invoice_issued", source=user)
    mirror = transaction_reverse(txn=original, memo="issued to the wrong patient")
    assert (mirror.kind, mirror.reverses_id, mirror.memo) == (
        "reversal",
        original.pk,
        "issued to the wrong patient",
    )
    assert (mirror.source_type, mirror.source_id) == (original.source_type, original.source_id)
    mirrored = sorted(mirror.postings.values_list("account__code", "amount", "patient_id"))
    assert mirrored == sorted(
        (c, -a, p)
        for c, a, p in original.postings.values_list("account__code", "amount", "patient_id")
    )
    assert balance(acc.AR, patient_id=7) == 0 and balance(acc.revenue(1)) == 0


def test_a_transaction_is_reversed_only_once(db):
    original = transaction_post(lines=invoice_lines(), kind="invoice_issued")
    mirror = transaction_reverse(txn=original, memo="voided", kind="invoice_voided")
    assert mirror.kind == "invoice_voided"
    with pytest.raises(AlreadyReversed) as refused:
        transaction_reverse(txn=original, memo="again")
    assert refused.value.code == "ledger_already_reversed"
    assert JournalTransaction.objects.count() == 2
    # A reversal is itself a transaction and may be corrected the same way.
    transaction_reverse(txn=mirror, memo="the void was a mistake")
    assert balance(acc.AR) == 11300


def test_a_reversal_needs_a_memo(db):
    original = transaction_post(lines=invoice_lines(), kind="invoice_issued")
    with pytest.raises(Exception) as refused:
        transaction_reverse(txn=original, memo="  ")
    assert refused.value.code == "invalid"


# -------------------------------------------------------- property: the trial balance stays at zero

PATIENTS = [1, 2, 3]
CODES = [
    acc.cash("cash"),
    acc.CARD_CLEARING,
    acc.AR,
    acc.PATIENT_CREDIT,
    acc.GIFT_CARD_LIABILITY,
    acc.DEFERRED_PACKAGES,
    acc.revenue(1),
    acc.revenue(2),
    acc.tax_payable(1),
    acc.BREAKAGE,
]
# (debit account, credit account, amount): each transfer adds one debit and one credit line.
transfers = st.lists(
    st.tuples(
        st.sampled_from(CODES),
        st.sampled_from(CODES),
        st.integers(0, 10**9),
        st.sampled_from(PATIENTS),
    ),
    min_size=1,
    max_size=5,
)


class LedgerMachine(RuleBasedStateMachine):
    """Random balanced postings and reversals against a model of each account's raw sum."""

    @initialize()
    def start(self):
        # Each run in its own savepoint, rolled back in teardown, so runs do not see each other.
        self.atomic = ExampleRollback().__enter__()
        self.expected: dict[tuple[str, int | None], int] = {}
        self.posted: list[JournalTransaction] = []

    def teardown(self):
        if hasattr(self, "atomic"):
            self.atomic.__exit__(None, None, None)

    def _add(self, code, patient_id, amount):
        key = (code, patient_id if code in acc.PER_PATIENT else None)
        self.expected[key] = self.expected.get(key, 0) + amount

    @rule(moves=transfers)
    def post(self, moves):
        lines = []
        for debit, credit, amount, patient in moves:
            lines += [
                Line(debit, debit=amount, patient_id=patient if debit in acc.PER_PATIENT else None),
                Line(
                    credit, credit=amount, patient_id=patient if credit in acc.PER_PATIENT else None
                ),
            ]
        if not any(amount for *_, amount, _ in moves):
            return  # all zero: refused as empty, covered elsewhere
        changes = [(debit, patient, amount) for debit, _, amount, patient in moves] + [
            (credit, patient, -amount) for _, credit, amount, patient in moves
        ]
        if self._overdraws(changes):
            with pytest.raises(LiabilityOverdrawn):
                transaction_post(lines=lines, kind="random")
            return
        self.posted.append(transaction_post(lines=lines, kind="random"))
        for code, patient, amount in changes:
            self._add(code, patient, amount)

    def _overdraws(self, changes) -> bool:
        """Whether these changes would leave a liability below zero (the guard refuses them)."""
        after = dict(self.expected)
        for code, patient_id, amount in changes:
            key = (code, patient_id if code in acc.PER_PATIENT else None)
            after[key] = after.get(key, 0) + amount
        return any(
            raw > 0 and acc.describe(code)[0] == acc.LIABILITY for (code, _), raw in after.items()
        )

    @rule(data=st.data())
    def reverse(self, data):
        open_ = [
            t for t in self.posted if not JournalTransaction.objects.filter(reverses=t).exists()
        ]
        if not open_:
            return
        txn = data.draw(st.sampled_from(open_))
        changes = [
            (p.account.code, p.patient_id, -p.amount)
            for p in txn.postings.select_related("account")
        ]
        if self._overdraws(changes):  # e.g. giving back credit that was spent since
            with pytest.raises(LiabilityOverdrawn):
                transaction_reverse(txn=txn, memo="property test")
            return
        self.posted.append(transaction_reverse(txn=txn, memo="property test"))
        for code, patient_id, amount in changes:
            self._add(code, patient_id, amount)

    @invariant()
    def trial_balance_is_zero(self):
        if not hasattr(self, "atomic"):
            return
        assert (Posting.objects.aggregate(t=Sum("amount"))["t"] or 0) == 0
        by_type = {}
        for code in CODES:
            kind = acc.describe(code)[0]
            by_type[kind] = by_type.get(kind, 0) + balance(code)
        # Assets = liabilities + revenue: debit-normal balances equal credit-normal ones.
        assert by_type[acc.ASSET] == by_type[acc.LIABILITY] + by_type[acc.REVENUE]
        results = run_all()
        assert results["transactions balance"] == [] and results["liabilities not negative"] == []

    @invariant()
    def balances_match_the_model(self):
        if not hasattr(self, "atomic"):
            return
        for (code, patient_id), raw in self.expected.items():
            sign = acc.normal_sign(acc.describe(code)[0])
            assert balance(code, patient_id=patient_id) == sign * raw


def test_random_balanced_postings_keep_the_trial_balance_at_zero(db):
    run_state_machine_as_test(
        LedgerMachine, settings=hsettings(max_examples=25, stateful_step_count=12, deadline=None)
    )
