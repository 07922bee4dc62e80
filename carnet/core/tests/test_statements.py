"""core.statements: a statement compiled once sends exactly what its plain queryset sends.

The first test walks every statement defined in carnet (`statements.REGISTRY`) and compares, for
sample values, the SQL and parameters (types included: psycopg's Int4 is not an int to PostgreSQL)
that the statement and the plain queryset hand to the cursor. It runs on SQLite and, with
DATABASE_URL, on PostgreSQL, so each vendor's SQL is checked where it is compiled."""

import datetime as dt
import decimal
import importlib
from pathlib import Path

import pytest
from django.core.exceptions import MultipleObjectsReturned, ObjectDoesNotExist
from django.db import DatabaseError, connection, transaction
from django.db.backends.postgresql.compiler import SQLInsertCompiler as UnnestCompiler
from django.db.models import F, signals
from django.db.models.functions import Now
from django.db.models.sql.compiler import SQLInsertCompiler
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

import carnet
from carnet.billing.models import Invoice, InvoiceLine, InvoiceLineTax
from carnet.conftest import make_staff
from carnet.core import clock, statements
from carnet.core.models import ActivityLog, IdempotencyRecord
from carnet.ledger import accounts
from carnet.ledger.models import Account, JournalTransaction, Posting
from carnet.ledger.services import Line, transaction_post, transaction_reverse
from carnet.passes.models import Redemption

pytestmark = pytest.mark.django_db

_AT = ActivityLog._meta.get_field("at")

# Statements of this test (they join the registry, and its walk checks them too).
_BY_KIND = statements.select(
    lambda verb, object_type, since: (
        ActivityLog.objects.filter(verb=verb, object_type=object_type, at__gte=since)
        .order_by("pk")
        .values_list("object_id", "object_repr")
    ),
    verb=str,
    object_type=str,
    since=_AT,
)
_ONE_BY_PK = statements.select(
    lambda pk: (
        ActivityLog.objects.select_related("actor")
        .only("verb", "at", "actor__username")
        .filter(pk=pk)
    ),
    pk=int,
)
_RENAME = statements.update(
    lambda pk, verb, object_type: (
        ActivityLog.objects.filter(pk=pk, object_type=object_type),
        {"verb": verb, "object_id": F("object_type")},
    ),
    pk=int,
    verb=str,
    object_type=str,
)

_BY_WHOM = statements.update(
    lambda pk, actor: (ActivityLog.objects.filter(pk=pk), {"actor_id": actor}),
    pk=int,
    actor=int,
)
# An integer column's value: psycopg's Int2 on PostgreSQL with server-side binding.
_ANSWERED = statements.update(
    lambda pk, code: (IdempotencyRecord.objects.filter(pk=pk), {"status_code": code}),
    pk=int,
    code=int,
)


# One slot in two places (the chain's `then` test).
_SPAN = statements.update(
    lambda low, verb: (ActivityLog.objects.filter(pk__gte=low, pk__lte=low), {"verb": verb}),
    low=int,
    verb=str,
)


def _statement_modules():
    """Every carnet module that defines statements (so the registry is complete)."""
    root = Path(carnet.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        if any(f"statements.{name}(" in text for name in ("select", "update", "locked_row")):
            yield ".".join(path.relative_to(root.parent).with_suffix("").parts)


_SAMPLES = {
    int: lambda n: 41 + n,
    str: lambda n: f"o'%s\"{n}",  # short: a varchar(10) column takes it too
    bool: lambda n: True,
    dt.datetime: lambda n: dt.datetime(2026, 5, 1, 9, 30, n, tzinfo=dt.timezone.utc),
    dt.date: lambda n: dt.date(2026, 5, 1) + dt.timedelta(days=n),
    decimal.Decimal: lambda n: decimal.Decimal("12.34") + n,
    bytes: lambda n: b"\x00%\xff" + bytes([n]),
}


def _sample(statement) -> dict:
    return {name: _SAMPLES[slot.kind](n) for n, (name, slot) in enumerate(statement.slots.items())}


def _typed(param):
    """A parameter with its type, and each item's for a list (PostgreSQL's UNNEST columns)."""
    items = [type(v) for v in param] if isinstance(param, list) else None
    return type(param), statements.comparable(param), items


def _sent(run) -> list:
    """What `run()` hands to the cursor: (sql, [(type, value)…]) per statement. A row found
    missing or refused by the database (a check, a foreign key of a sample) does not matter: what
    was sent is the point."""
    sent = []

    def spy(execute, sql, params, many, context):
        sent.append((sql, [_typed(p) for p in params or ()]))
        return execute(sql, params, many, context)

    try:
        with transaction.atomic():  # its savepoint is not spied on
            with connection.execute_wrapper(spy):
                try:
                    run()
                except (ObjectDoesNotExist, MultipleObjectsReturned):
                    pass
            transaction.set_rollback(True)
    except DatabaseError:
        pass
    return sent


def test_every_statement_sends_what_its_plain_queryset_sends():
    for module in _statement_modules():
        importlib.import_module(module)
    assert len(statements.REGISTRY) > 4  # carnet's, not only this module's four
    for statement in statements.REGISTRY:
        values = _sample(statement)
        if isinstance(statement, statements.Update):

            def plain(values=values, statement=statement):
                qs, changes = statement.build(**values)
                qs.update(**changes)

            pairs = [(lambda: statement.run(**values), plain)]
        else:
            pairs = [
                (lambda: statement.all(**values), lambda: list(statement.build(**values))),
                (lambda: statement.get(**values), lambda: statement.build(**values).get()),
            ]
        for mine, theirs in pairs:
            assert _sent(mine) == _sent(theirs), statement


def test_values_go_to_their_places_whatever_they_hold():
    now = clock.now()
    awkward = ["o'brien", "100%", "%s", '"; DROP TABLE core_activitylog; --', "é\\n"]
    for n, text in enumerate(awkward):
        ActivityLog.objects.create(
            at=now + dt.timedelta(minutes=n),
            actor_name="",
            verb=text,
            object_type=awkward[-1 - n],
            object_id=str(n),
            object_repr=text + "!",
        )
    since = now + dt.timedelta(minutes=1)
    for verb, kind in zip(awkward, reversed(awkward)):
        plain = list(
            ActivityLog.objects.filter(verb=verb, object_type=kind, at__gte=since)
            .order_by("pk")
            .values_list("object_id", "object_repr")
        )
        assert _BY_KIND.all(verb=verb, object_type=kind, since=since) == plain
    assert _BY_KIND.all(verb=awkward[0], object_type=awkward[-1], since=since) == []  # at n=0
    assert _BY_KIND.all(verb="%s", object_type="%s", since=since) == [("2", "%s!")]


def test_instances_come_back_as_the_queryset_makes_them():
    staff = make_staff()
    row = ActivityLog.objects.create(
        at=clock.now(), actor=staff.user, actor_name="x", verb="seen", object_type="t"
    )
    mine = _ONE_BY_PK.get(pk=row.pk)
    theirs = ActivityLog.objects.select_related("actor").only("verb", "at", "actor__username")
    theirs = theirs.get(pk=row.pk)
    assert type(mine) is ActivityLog and not mine._state.adding and mine._state.db == "default"
    assert (mine.pk, mine.verb, mine.at) == (theirs.pk, theirs.verb, theirs.at)
    assert mine.get_deferred_fields() == theirs.get_deferred_fields()
    assert mine.actor.username == staff.user.username  # from the join, no query
    with pytest.raises(ActivityLog.DoesNotExist):
        _ONE_BY_PK.get(pk=row.pk + 1000)
    assert _ONE_BY_PK.get_or_none(pk=row.pk + 1000) is None
    key = ("default", connection.vendor, "get")
    assert key in _ONE_BY_PK._compiled  # one compiled form per database alias and vendor


# Two levels of joins, one of them a one-to-one that may be empty.
_POSTINGS_JOINED = statements.select(
    lambda txn: (
        Posting.objects.select_related("transaction__reverses", "account")
        .filter(transaction_id=txn)
        .order_by("pk")
    ),
    txn=int,
)


def _loaded(obj, seen: set | None = None):
    """An instance as loaded: its type, values, state and the instances its joins cached."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return "(seen)"
    seen.add(id(obj))
    cached = sorted(obj._state.fields_cache.items())
    return (
        type(obj),
        {name: value for name, value in vars(obj).items() if name != "_state"},
        (obj._state.adding, obj._state.db),
        [(name, None if rel is None else _loaded(rel, seen)) for name, rel in cached],
    )


def test_instances_and_their_joins_are_built_as_the_queryset_builds_them():
    """Rows become instances without Model.__init__ where it would only store the values
    (core.statements): the same values, state and joined instances as the queryset's."""
    original = transaction_post(
        kind="sale",
        lines=[Line(accounts.cash("cash"), debit=500), Line(accounts.BREAKAGE, credit=500)],
    )
    reversal = transaction_reverse(txn=original, memo="entered twice")
    for txn in (original, reversal):  # a reversal's joined `reverses`, and an empty one
        mine = _POSTINGS_JOINED.all(txn=txn.pk)
        theirs = list(_POSTINGS_JOINED.build(txn=txn.pk))
        assert len(mine) == 2
        assert [_loaded(p) for p in mine] == [_loaded(p) for p in theirs]
    assert mine[0].transaction.reverses.pk == original.pk


def test_a_model_with_an_init_receiver_is_built_by_django():
    """A post_init receiver (connected before the statement compiles) still sees each instance."""
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.code)

    transaction_post(
        kind="sale",
        lines=[Line(accounts.cash("cash"), debit=300), Line(accounts.BREAKAGE, credit=300)],
    )
    signals.post_init.connect(receiver, sender=Account)
    try:
        by_code = statements.select(lambda code: Account.objects.filter(code=code), code=str)
        [account] = by_code.all(code=accounts.BREAKAGE)
    finally:
        signals.post_init.disconnect(receiver, sender=Account)
    assert seen == [accounts.BREAKAGE] and account.code == accounts.BREAKAGE


def test_update_returns_the_rows_it_changed():
    row = ActivityLog.objects.create(at=clock.now(), actor_name="x", verb="a", object_type="t")
    assert _RENAME.run(pk=row.pk, verb="b", object_type="other") == 0
    assert _RENAME.run(pk=row.pk, verb="it's b", object_type="t") == 1
    row.refresh_from_db()
    assert (row.verb, row.object_id) == ("it's b", "t")


def test_updates_of_different_tables_together_are_one_statement_on_postgresql():
    row = ActivityLog.objects.create(at=clock.now(), actor_name="x", verb="a", object_type="t")
    record = IdempotencyRecord.objects.create(
        scope="s", key="k", request_hash="h", status_code=0, created_at=clock.now()
    )
    rename = (_RENAME, dict(pk=row.pk, verb="b", object_type="t"))
    with CaptureQueriesContext(connection) as queries:
        changed = statements.updates_together(rename, (_ANSWERED, dict(pk=record.pk + 1, code=201)))
    assert changed == [1, 0]
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)
    assert statements.updates_together((_ANSWERED, dict(pk=record.pk, code=201))) == [1]
    row.refresh_from_db(), record.refresh_from_db()
    assert (row.verb, row.object_id, record.status_code) == ("b", "t", 201)
    # The same table twice (PostgreSQL would change a row once), or a None: each in turn.
    twice = (_BY_WHOM, dict(pk=row.pk, actor=None))
    with CaptureQueriesContext(connection) as queries:
        assert statements.updates_together(rename, (_RENAME, dict(pk=0, verb="c", object_type="t")))
        assert statements.updates_together(twice, (_ANSWERED, dict(pk=record.pk, code=200)))
    assert len(queries) == 4


def test_chained_updates_run_only_after_one_that_changed_a_row():
    row = ActivityLog.objects.create(at=clock.now(), actor_name="x", verb="a", object_type="t")
    record = IdempotencyRecord.objects.create(
        scope="s", key="k", request_hash="h", status_code=0, created_at=clock.now()
    )
    answered = (_ANSWERED, dict(pk=record.pk, code=201))
    missed = (_RENAME, dict(pk=row.pk, verb="b", object_type="other"))  # changes nothing
    with CaptureQueriesContext(connection) as queries:
        assert statements.updates_together(missed, answered, chained=True) == [0, 0]
    assert len(queries) == 1  # PostgreSQL: one statement; elsewhere the second is not sent
    record.refresh_from_db()
    assert record.status_code == 0
    hit = (_RENAME, dict(pk=row.pk, verb="b", object_type="t"))
    assert statements.updates_together(hit, answered, chained=True) == [1, 1]
    record.refresh_from_db(), row.refresh_from_db()
    assert (row.verb, record.status_code) == ("b", 201)
    assert statements.updates_together(answered, hit, chained=False) == [1, 1]


def test_none_runs_the_plain_queryset():
    """filter(x=None) is IS NULL and update(x=None) is `= NULL`: other statements than the
    compiled one, so a None value takes the ORM's own way."""
    user = make_staff().user
    row = ActivityLog.objects.create(at=clock.now(), actor_name="x", verb="a", object_type="t")
    assert _ONE_BY_PK.get_or_none(pk=None) is None
    assert _sent(lambda: _ONE_BY_PK.all(pk=None)) == _sent(lambda: list(_ONE_BY_PK.build(pk=None)))
    assert _BY_WHOM.run(pk=row.pk, actor=user.pk) == 1
    row.refresh_from_db()
    assert row.actor_id == user.pk
    assert "= NULL" in _sent(lambda: _BY_WHOM.run(pk=row.pk, actor=None))[0][0]
    assert _BY_WHOM.run(pk=row.pk, actor=None) == 1
    row.refresh_from_db()
    assert row.actor_id is None


def test_wrong_values_are_refused_not_guessed():
    with pytest.raises(TypeError, match="int"):
        _ONE_BY_PK.get(pk="3")
    with pytest.raises(TypeError, match="int"):
        _ONE_BY_PK.get(pk=True)
    with pytest.raises(TypeError):
        _ONE_BY_PK.get(pk=1, other=2)


@pytest.mark.parametrize(
    "build, slot, why",
    [
        (
            lambda flag: ActivityLog.objects.filter(actor__isnull=flag),
            bool,
            "depends on",
        ),
        (lambda n: ActivityLog.objects.all()[:n], int, "depends on"),
        (lambda n: ActivityLog.objects.filter(pk=n + 1), int, "not 'n' as given"),
        (lambda n: ActivityLog.objects.all(), int, "not among the parameters"),
        (lambda n: ActivityLog.objects.filter(pk=n).values("verb"), int, "values_list"),
        (lambda n: ActivityLog.objects.filter(pk=n).prefetch_related("actor"), int, "prefetch"),
    ],
)
def test_shapes_it_cannot_compile_are_refused_loudly(build, slot, why):
    statement = statements.Select(build, {"n" if slot is int else "flag": slot})
    statements.REGISTRY.remove(statement)  # not one of carnet's
    with pytest.raises(statements.Refused, match=why):
        statement.all(**{name: _SAMPLES[slot](0) for name in statement.slots})


def test_a_condition_django_would_drop_for_a_probe_is_refused_not_lost():
    """Django leaves out `status_code < n` when n is beyond a small integer's range, as the probes
    are on PostgreSQL: compiled from them, the statement would lose the condition for every value.
    Refused there; where the range holds the probes (SQLite), the condition stays."""
    below = statements.Select(
        lambda n: IdempotencyRecord.objects.filter(status_code__lt=n), {"n": int}
    )
    statements.REGISTRY.remove(below)
    IdempotencyRecord.objects.create(
        scope="s", key="k", request_hash="h", status_code=200, created_at=clock.now()
    )
    if connection.ops.integer_field_range("PositiveSmallIntegerField")[1] < 1_987_660_000:
        with pytest.raises(statements.Refused, match="depends on the values"):
            below.all(n=100)
    else:
        assert below.all(n=100) == [] and len(below.all(n=300)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_locking_select_outside_a_transaction_fails_as_the_orm_does():
    locking = statements.Select(
        lambda pk: ActivityLog.objects.select_for_update().filter(pk=pk), {"pk": int}
    )
    statements.REGISTRY.remove(locking)
    if not connection.features.has_select_for_update:
        assert locking.all(pk=1) == []
        return
    with pytest.raises(TransactionManagementError):
        ActivityLog.objects.select_for_update().filter(pk=1).first()
    with pytest.raises(TransactionManagementError):
        locking.all(pk=1)
    with transaction.atomic():
        assert locking.all(pk=1) == []
    with pytest.raises(TransactionManagementError):
        locking.all(pk=1)  # compiled now: the check is made on every call


# -- compiled inserts (statements.Insert)

_WHEN = dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.timezone.utc)


def _sample_value(field, n: int):
    """A value of the field's type (the statement is compared, not kept)."""
    if field.is_relation:
        return 41 + n
    if field.choices:
        return field.choices[n % len(field.choices)][0]
    kind = field.get_internal_type()
    if kind == "JSONField":
        return {"n": n, "text": "o'%s"}
    if kind == "DateTimeField":
        return _WHEN + dt.timedelta(seconds=n)
    if kind == "DateField":
        return _WHEN.date()
    if kind == "DecimalField":
        return decimal.Decimal("0.05")
    if kind == "BinaryField":
        return b"\x00%" + bytes([n])
    if kind == "BooleanField":
        return bool(n % 2)
    if kind in ("CharField", "TextField", "EmailField", "SlugField"):
        return f"o'%s{n}"[: field.max_length or 50]
    return 41 + n  # integer kinds


def _samples(model, count: int) -> list:
    fields = statements.Insert(model).fields
    return [model(**{f.attname: _sample_value(f, n) for f in fields}) for n in range(count)]


@pytest.fixture
def values_form(monkeypatch):
    """bulk_create in the VALUES form for every row count, as the compiled insert sends it
    (PostgreSQL's compiler otherwise sends an UNNEST of arrays for more than one row)."""
    if connection.vendor == "postgresql":
        monkeypatch.setattr(UnnestCompiler, "assemble_as_sql", SQLInsertCompiler.assemble_as_sql)


def _hot_models():
    """The models the redemption inserts (issue 25)."""
    return [
        ActivityLog,
        Redemption,
        JournalTransaction,
        Posting,
        Invoice,
        InvoiceLine,
        InvoiceLineTax,
    ]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_an_insert_sends_what_bulk_create_sends(count, values_form):
    for model in _hot_models():
        # Twice: the first call compiles from the compiler, the second computes the parameters.
        for _ in range(2):
            mine = _sent(lambda: statements.insert(_samples(model, count)))
            theirs = _sent(lambda: model.objects.bulk_create(_samples(model, count)))
            assert mine == theirs, model
        key = ("default", connection.vendor, count)
        assert statements.inserter(model)._compiled[key] is not None, model  # not fallen back
    # A field with a placeholder of its own (a binary one, on some databases): bulk_create's way.
    assert statements.Insert(IdempotencyRecord).plain_only
    mine = _sent(lambda: statements.insert(_samples(IdempotencyRecord, count)))
    theirs = _sent(
        lambda: IdempotencyRecord.objects.bulk_create(_samples(IdempotencyRecord, count))
    )
    assert mine == theirs


def test_values_of_other_types_are_converted_as_bulk_create_converts_them(values_form):
    """The known conversions (an int, a str, a bool in Django's own fields) are taken only for
    exactly those types: a numeric string, a Decimal, a bool in an integer field or None go
    Django's whole way, as bulk_create's would."""
    odd = [
        {"amount": "-12", "patient_id": None, "transaction_id": "41", "account_id": 42},
        {
            "amount": decimal.Decimal("7"),
            "patient_id": True,
            "transaction_id": 41,
            "account_id": 42,
        },
        {"amount": 5, "patient_id": 3, "transaction_id": 41, "account_id": 42},
    ]
    for _ in range(2):  # compiled on the first call, computed on the second
        for count in (1, 3):
            mine = _sent(lambda count=count: statements.insert([Posting(**v) for v in odd[:count]]))
            theirs = _sent(
                lambda count=count: Posting.objects.bulk_create([Posting(**v) for v in odd[:count]])
            )
            assert mine == theirs and mine


@pytest.mark.parametrize("count", [1, 2])
def test_rows_given_as_dicts_send_what_their_instances_send(count, values_form):
    """insert_rows builds no instance once its row count is compiled: what it sends is what the
    same rows as instances send (a missing value is the field's default)."""
    for model in _hot_models():
        fields = statements.Insert(model).fields
        rows = [
            {f.attname: _sample_value(f, n) for f in fields if f.attname != "before"}
            for n in range(count)
        ]
        for _ in range(2):  # the first call compiles, the second builds no instance
            mine = _sent(lambda rows=rows, model=model: statements.insert_rows(model, rows))
            theirs = _sent(
                lambda rows=rows, model=model: model.objects.bulk_create(
                    [model(**row) for row in rows]
                )
            )
            assert mine == theirs and mine, model
    built = []
    real = ActivityLog.__init__
    try:
        ActivityLog.__init__ = lambda self, *a, **k: built.append(1) or real(self, *a, **k)
        statements.insert_rows(ActivityLog, [{"at": _WHEN, "verb": "v", "object_type": "t"}])
    finally:
        ActivityLog.__init__ = real
    assert built == [] and ActivityLog.objects.filter(verb="v", actor_name="").exists()


def test_inserted_rows_come_back_as_bulk_create_makes_them():
    staff = make_staff()
    rows = [
        ActivityLog(at=_WHEN, actor=staff.user, actor_name="x", verb=v, object_type="t")
        for v in ("a", "it's b")
    ]
    back = statements.insert(rows)
    assert all(a is b for a, b in zip(back, rows, strict=True))
    assert all(r.pk and not r._state.adding for r in rows)
    assert all(r._state.db == "default" for r in rows)
    assert rows[1].pk > rows[0].pk
    stored = ActivityLog.objects.filter(pk__in=[r.pk for r in rows]).order_by("pk")
    assert [(r.verb, r.actor_id, r.at) for r in stored] == [
        ("a", staff.user.pk, _WHEN),
        ("it's b", staff.user.pk, _WHEN),
    ]
    one = statements.create(ActivityLog, at=_WHEN, actor_name="y", verb="c", object_type="t")
    assert ActivityLog.objects.get(pk=one.pk).verb == "c"


def test_several_rows_go_as_values_and_come_back_in_their_order():
    rows = [
        ActivityLog(at=_WHEN, actor_name="x", verb=f"v{n}", object_type="t", after={"n": n})
        for n in range(3)
    ]
    sent = _sent(lambda: statements.insert(rows))
    assert "UNNEST" not in sent[0][0] and " VALUES " in sent[0][0]
    statements.insert(rows)
    stored = ActivityLog.objects.filter(pk__in=[r.pk for r in rows]).order_by("pk")
    assert [(r.verb, r.after) for r in stored] == [(f"v{n}", {"n": n}) for n in range(3)]


def test_what_it_does_not_compile_goes_to_bulk_create():
    # An expression as a value, a key already set, more rows than it compiles: bulk_create's own.
    plain = [
        [ActivityLog(at=Now(), actor_name="x", verb="now", object_type="t")],
        [ActivityLog(pk=987_654, at=_WHEN, actor_name="x", verb="keyed", object_type="t")],
        [
            ActivityLog(at=_WHEN, actor_name="x", verb=f"m{n}", object_type="t")
            for n in range(statements.Insert.MAX_ROWS + 1)
        ],
    ]
    for rows in plain:
        copies = [
            ActivityLog(
                **{f.attname: getattr(r, f.attname) for f in ActivityLog._meta.concrete_fields}
            )
            for r in rows
        ]
        mine = _sent(lambda rows=rows: statements.insert(rows))
        theirs = _sent(lambda copies=copies: ActivityLog.objects.bulk_create(copies))
        assert mine == theirs
    assert ActivityLog.objects.filter(verb="now").exists() is False  # rolled back by _sent
    with transaction.atomic():
        done = statements.insert(plain[1])
    assert done[0].pk == 987_654 and ActivityLog.objects.filter(pk=987_654).exists()


def test_a_chain_of_inserts_is_one_statement_and_leaves_what_the_inserts_leave(monkeypatch):
    """insert_chain (PostgreSQL): each step's compiled insert in a WITH, its key to the step before
    taken from that step; the instances come back saved, the dict rows stored."""
    monkeypatch.setattr(statements, "_INSERTS", {})  # nothing compiled yet in this process
    account = Account.objects.create(code="cash:chain", name="Cash", type="asset")
    other = Account.objects.create(code="cash:other", name="Other", type="asset")
    txn = JournalTransaction(at=_WHEN, kind="k", memo="chained")
    first = Posting(account_id=account.pk, amount=5)
    rows = [
        {"transaction_id": None, "account_id": a.pk, "amount": n}
        for a, n in ((account, 2), (other, -2))
    ]
    steps = [(JournalTransaction, [txn], None), (Posting, [first], "transaction_id")]
    assert not statements.insert_chain(steps)  # not compiled: nothing sent
    assert not txn.pk and not first.pk
    warm = statements.insert([JournalTransaction(at=_WHEN, kind="k")])[0]
    for amount in (7, -7):  # (every journal transaction balances at the test's end)
        statements.insert([Posting(transaction_id=warm.pk, account_id=account.pk, amount=amount)])
    statements.insert_rows(Posting, [{**r, "transaction_id": warm.pk} for r in rows])
    with CaptureQueriesContext(connection) as queries:
        done = statements.insert_chain(steps)
    if connection.vendor != "postgresql":
        assert not done and not queries.captured_queries  # no INSERT inside a WITH
        return
    assert done and len(queries) == 1 and queries[0]["sql"].startswith("WITH s0 AS (INSERT")
    assert txn.pk and not txn._state.adding and first.transaction_id == txn.pk and first.pk
    assert JournalTransaction.objects.get(pk=txn.pk).memo == "chained"
    assert Posting.objects.get(pk=first.pk).transaction_id == txn.pk
    Posting.objects.create(transaction=txn, account=other, amount=-5)
    # A step of several rows only last; dicts as the last step's rows.
    two = [Posting(account_id=account.pk, amount=n) for n in (1, 2)]
    more = [(JournalTransaction, [JournalTransaction(at=_WHEN, kind="k")], None)]
    assert not statements.insert_chain([*more, (Posting, two, "transaction_id"), steps[1]])
    assert statements.insert_chain([*more, (Posting, rows, "transaction_id")])
    assert sorted(more[0][1][0].postings.values_list("account_id", "amount")) == [
        (account.pk, 2),
        (other.pk, -2),
    ]


def test_updates_that_follow_a_new_row_take_its_key_in_its_own_statement():
    """insert_chain's `then`: on PostgreSQL in the chain's statement, the key slot given the new
    row's key (whatever value it held); elsewhere nothing is sent and the caller, having inserted
    the row its own way, sends them with `Then.run`. `changed` is what each update changed."""
    row = ActivityLog.objects.create(at=clock.now(), actor_name="x", verb="a", object_type="t")
    record = IdempotencyRecord.objects.create(
        scope="s", key="k", request_hash="h", status_code=0, created_at=clock.now()
    )
    statements.insert([ActivityLog(at=_WHEN, actor_name="warm", verb="v")])  # one row compiled
    new = ActivityLog(at=_WHEN, actor_name="new", verb="v")
    then = statements.Then(
        [
            (_ANSWERED, dict(pk=record.pk, code=None)),  # code: the new row's key
            (_RENAME, dict(pk=row.pk, verb="b", object_type="other")),  # changes nothing
        ],
        key="code",
    )
    with CaptureQueriesContext(connection) as queries:
        done = statements.insert_chain([(ActivityLog, [new], None)], then=then)
    if connection.vendor == "postgresql":
        assert done and len(queries) == 1 and new.pk and not new._state.adding
    else:
        assert not done and not queries.captured_queries and then.changed is None
        statements.insert([new])
        then.run(new.pk)
    assert then.changed == [1, 0]
    record.refresh_from_db(), row.refresh_from_db()
    assert (record.status_code, row.verb) == (new.pk, "a")
    assert ActivityLog.objects.get(pk=new.pk).actor_name == "new"
    # A key slot in two places of its update: not rewritten (the chain is not used), never half.
    twice = statements.Then([(_SPAN, dict(low=None, verb="spanned"))], key="low")
    other = ActivityLog(at=_WHEN, actor_name="other", verb="v")
    assert not statements.insert_chain([(ActivityLog, [other], None)], then=twice)
    assert not other.pk and twice.changed is None


def test_statements_share_a_cursor_until_the_connection_or_its_logging_changes():
    row = ActivityLog.objects.create(at=_WHEN, actor_name="x", verb="a", object_type="t")
    _ONE_BY_PK.get(pk=row.pk)
    first = statements.shared_cursor(connection)
    _RENAME.run(pk=row.pk, verb="b", object_type="t")
    assert statements.shared_cursor(connection) is first
    with CaptureQueriesContext(connection) as captured:  # a debug cursor: the queries are seen
        assert _ONE_BY_PK.get(pk=row.pk).verb == "b"
    assert len(captured) == 1
    assert statements.shared_cursor(connection) is not first


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_cursor():
    row = ActivityLog.objects.create(at=_WHEN, actor_name="x", verb="a", object_type="t")
    before = statements.shared_cursor(connection)
    connection.close()
    assert _ONE_BY_PK.get(pk=row.pk).verb == "a"  # reconnects, not the closed cursor
    assert statements.shared_cursor(connection) is not before


class _Asked:
    """A router that answers nothing (the next one decides) and counts the models it is asked
    about."""

    asked: list = []

    def db_for_read(self, model, **hints):
        self.asked.append(("read", model._meta.label))

    def db_for_write(self, model, **hints):
        self.asked.append(("write", model._meta.label))


def test_the_routers_are_asked_once_per_statement_while_they_stay_the_same(settings):
    row = ActivityLog.objects.create(at=_WHEN, actor_name="x", verb="a", object_type="t")
    _ONE_BY_PK.get(pk=row.pk)
    _Asked.asked = []
    # New routers (a settings change makes them anew): the statements ask them, once each.
    settings.DATABASE_ROUTERS = [f"{__name__}._Asked", *settings.DATABASE_ROUTERS]
    for verb in ("b", "c"):
        _RENAME.run(pk=row.pk, verb=verb, object_type="t")
        assert _ONE_BY_PK.get(pk=row.pk).verb == verb
        statements.insert_rows(
            ActivityLog, [{"at": _WHEN, "actor_name": "y", "verb": verb, "object_type": "t"}]
        )
    assert sorted(_Asked.asked) == [
        ("read", "core.ActivityLog"),
        ("write", "core.ActivityLog"),
        ("write", "core.ActivityLog"),
    ]
