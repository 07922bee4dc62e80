"""Set-based writes shared by the daily jobs."""

from __future__ import annotations

from collections import defaultdict

from django.db import connection
from django.db.models import NOT_PROVIDED, F

from carnet.core import statements

# Below this many rows a plain INSERT is cheaper than fetching ids and opening a COPY.
COPY_FROM = 100
# Fields whose Python value PostgreSQL's COPY parses as is (no Django conversion needed).
_AS_IS = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
    "CharField",
    "TextField",
    "BooleanField",
    "DateField",
    "DecimalField",
    "ForeignKey",
    "OneToOneField",
}


def _as_is(field) -> bool:
    return (
        field.get_internal_type() in _AS_IS
        and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False)
    )


def _copy(cur, model, fields, rows) -> None:
    """COPY `rows` (lists of values in the order of `fields`) into the model's table."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in fields)
    with cur.cursor.copy(f"COPY {qn(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def insert(model, objs) -> list:
    """`bulk_create` for big batches (the billing job): on PostgreSQL the ids come from the table's
    sequence in one query and the rows go in by COPY, because Django's bulk_create spends most of
    its time preparing each value of each row in Python. Small batches,
    and SQLite, use bulk_create."""
    objs = list(objs)
    if connection.vendor != "postgresql" or len(objs) < COPY_FROM:
        return statements.insert(objs)  # a few rows: compiled; more: bulk_create
    meta = model._meta
    for obj in objs:
        obj._prepare_related_fields_for_save(
            operation_name="bulk_create"
        )  # unsaved parents refused, ids copied
    fields = meta.concrete_fields
    plain = [_as_is(f) for f in fields]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        for obj, (pk,) in zip(objs, cur.fetchall()):
            obj.pk = pk
        _copy(
            cur,
            model,
            fields,
            (
                [
                    getattr(obj, f.attname)
                    if as_is
                    else f.get_db_prep_save(f.pre_save(obj, True), connection)
                    for f, as_is in zip(fields, plain)
                ]
                for obj in objs
            ),
        )
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias
    return objs


def insert_rows(model, rows) -> None:
    """`insert` for rows nobody reads back (postings, line taxes, activity): dicts of column values
    by attname, all with the same keys, so no model instance is built per row (a tenth of the
    billing job); on PostgreSQL the table's identity column numbers them."""
    rows = list(rows)
    if connection.vendor != "postgresql" or len(rows) < COPY_FROM:
        statements.insert_rows(model, rows)  # a few rows: compiled; more: bulk_create
        return
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    fields = [by_attname[name] for name in rows[0]]
    plain = [_as_is(f) for f in fields]
    with connection.cursor() as cur:
        _copy(
            cur,
            model,
            fields,
            (
                [
                    value if as_is else f.get_db_prep_save(value, connection)
                    for f, as_is, value in zip(fields, plain, row.values())
                ]
                for row in rows
            ),
        )


def add_to(model, field: str, amounts) -> None:
    """Add an amount to `field` of many rows, given (pk, amount) pairs: one UPDATE per distinct
    amount (memberships of a template share theirs), cheaper than a statement or a CASE per row.
    Relative (F) updates, so a row listed twice gets both amounts."""
    by_amount = defaultdict(list)
    for pk, amount in amounts:
        by_amount[amount].append(pk)
    for amount, pks in by_amount.items():
        if amount:
            for n in range(0, len(pks), 1000):  # stay under SQLite's parameter limit
                model.objects.filter(pk__in=pks[n : n + 1000]).update(**{field: F(field) + amount})


def chunks(items: list, size: int = 900):
    """Slices small enough for SQLite's limit on query parameters."""
    return (items[n : n + size] for n in range(0, len(items), size))


def unlisted_required(model, given, *, model_defaults: bool = True) -> list[str]:
    """The model's NOT NULL columns that an INSERT naming only `given` leaves out and that neither
    the database (a `db_default`) nor, with `model_defaults` (an INSERT completed by
    `default_columns`), the model (a `default`) fills: such an INSERT fails."""
    given = {c.strip().strip('"') for c in given}
    return [
        f.column
        for f in model._meta.concrete_fields
        if f.column not in given
        and not f.primary_key
        and not f.null
        and f.db_default is NOT_PROVIDED
        and not (model_defaults and f.has_default())
    ]


def default_columns(model, given) -> tuple[str, str]:
    """For a hand-written `INSERT INTO <model's table> (<given>, …) SELECT <values>, …` (the
    benchmarks' and load tests' generated data, PostgreSQL): `(", col, …", ", value, …")`, the
    columns the INSERT does not name that have a model default, with that default as an SQL
    literal (`%` doubled, for a statement run with parameters). A column added later with a default
    is then filled without touching the statement; one without a default raises ValueError here,
    naming it, rather than a NOT NULL violation somewhere in a long load."""
    # late: psycopg is the PostgreSQL driver, which a SQLite run never loads
    from psycopg import sql

    missing = unlisted_required(model, given)
    if missing:
        raise ValueError(f"{model._meta.db_table}: no value and no default for {missing}")
    given = {c.strip().strip('"') for c in given}
    connection.ensure_connection()
    raw = connection.connection
    qn = connection.ops.quote_name
    columns, values = [], []
    for f in model._meta.concrete_fields:
        if f.column in given or f.primary_key or not f.has_default():
            continue
        value = f.get_db_prep_save(f.get_default(), connection)
        literal = sql.Literal(value).as_string(raw).replace("%", "%%")
        columns.append(qn(f.column))
        values.append(f"CAST({literal} AS {f.cast_db_type(connection)})")
    return "".join(f", {c}" for c in columns), "".join(f", {v}" for v in values)
