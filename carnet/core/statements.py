"""Querysets compiled once per process (issue 25): the ORM writes the SQL, once.

Building a queryset (`filter`, `select_related`…) and compiling it to SQL is most of the Python
time of a redemption, yet the busiest paths send the same few statements with new values. A
`Select` or `Update` is defined next to the service that uses it, from a function that builds the
plain queryset; on first use on a database (alias and vendor: SQLite and PostgreSQL SQL differ) it
builds and compiles that queryset twice with probe values, keeps the SQL and finds where each
value goes among the parameters; later calls only put the new values in place and execute. So the
statement stays the ORM's own SQL (the same text every time, which PostgreSQL's prepared statements
want: settings' DB_PREPARE_THRESHOLD) and the rule stays in the service's queryset.

What it takes (anything else is refused when first compiled, loudly):
- values are whole slots: an int, str, bool, date, datetime, Decimal or bytes named in the
  definition (`pk=int`), or a model field whose conversion Django applies
  (`at=Model._meta.get_field("at")`); never a list. A call with a None value runs the plain
  queryset (None is another statement: `IS NULL` in a filter, `= NULL` in an update);
- selects return model instances (select_related, only/defer, select_for_update) or
  values_list rows; no prefetch_related (`prefetched` leaves a compiled select's rows where
  prefetch_related would), no values() dicts. Instances are built as `from_db` builds them, without
  `Model.__init__` where that would only store the values (`_builder`);
- updates are `QuerySet.update` on one table (F expressions and conditions welcome);
- the SQL must not depend on the values: a comparison Django decides from an integer alone (one
  beyond its column's range, as the large probes are for a small integer) is refused.

`insert` / `create` are `bulk_create` / `objects.create` of a few new rows, compiled the same way
from the compiler's own SQL (`Insert`). All of them run on one cursor per database connection.
On PostgreSQL, `insert_chain` (an invoice, its line, the line's taxes) and `updates_together`
(updates of different tables) send several of these compiled statements as one, each in a WITH.

`core/tests/test_statements.py` walks every statement defined in carnet (`REGISTRY`) and checks,
on SQLite and PostgreSQL, that it sends exactly what its plain queryset sends for sample values.
The cache is a per-process dict filled idempotently, so gunicorn's threads may race to fill it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from types import MethodType

from django.db import connections, models, router, transaction
from django.db.models import AutoField, Field, QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query import (
    MAX_GET_RESULTS,
    FlatValuesListIterable,
    ModelIterable,
    ValuesListIterable,
    get_related_populators,
)
from django.db.models.query_utils import DeferredAttribute
from django.db.models.sql import InsertQuery, UpdateQuery
from django.db.models.sql.compiler import SQLInsertCompiler
from django.db.transaction import TransactionManagementError

REGISTRY: list[Statement] = []

_UTC = dt.timezone.utc
# Two sets of probe values per kind of slot, unlike any constant a query carries; `n` keeps the
# slots of one statement apart.
_PROBES = {
    int: (lambda n: 1_987_650_000 + n, lambda n: 1_987_660_000 + n),
    str: (lambda n: f"~slot a{n}~", lambda n: f"~slot b{n}~"),
    bool: (lambda n: True, lambda n: False),
    dt.datetime: (
        lambda n: dt.datetime(2001, 2, 3, 4, 5, 6, 100 + n, tzinfo=_UTC),
        lambda n: dt.datetime(2002, 3, 4, 5, 6, 7, 200 + n, tzinfo=_UTC),
    ),
    dt.date: (
        lambda n: dt.date(2001, 2, 3) + dt.timedelta(days=n),
        lambda n: dt.date(2002, 3, 4) + dt.timedelta(days=n),
    ),
    decimal.Decimal: (
        lambda n: decimal.Decimal("98765.4321") + n,
        lambda n: decimal.Decimal("87654.3219") + n,
    ),
    bytes: (lambda n: b"~slot a%d~" % n, lambda n: b"~slot b%d~" % n),
}
# A model field's slot takes the probes of the Python type its values have.
_FIELD_TYPES = {
    "AutoField": int,
    "BigAutoField": int,
    "SmallAutoField": int,
    "IntegerField": int,
    "BigIntegerField": int,
    "SmallIntegerField": int,
    "PositiveIntegerField": int,
    "PositiveBigIntegerField": int,
    "PositiveSmallIntegerField": int,
    "CharField": str,
    "TextField": str,
    "BooleanField": bool,
    "DateTimeField": dt.datetime,
    "DateField": dt.date,
    "DecimalField": decimal.Decimal,
    "BinaryField": bytes,
}


def _same(value):
    return value


def comparable(value):
    """A parameter as compared: a wrapper without an equality of its own (psycopg's Binary, Jsonb)
    by what it holds; a list (PostgreSQL's UNNEST columns) item by item."""
    if isinstance(value, list):
        return [comparable(v) for v in value]
    kind = type(value)
    if kind.__eq__ is not object.__eq__:
        return value
    names = [n for c in kind.__mro__ for n in getattr(c, "__slots__", ())]
    held = sorted(getattr(value, "__dict__", {}).items())
    return kind, [(n, getattr(value, n, None)) for n in names], held


class Refused(Exception):
    """The queryset is of a shape this module does not compile: use the plain queryset."""


class _Slot:
    __slots__ = ("name", "kind", "field")

    def __init__(self, name: str, spec):
        self.name = name
        if isinstance(spec, Field):
            self.field = spec
            if spec.is_relation:
                spec = spec.target_field
            self.kind = _FIELD_TYPES.get(spec.get_internal_type())
        else:
            self.field, self.kind = None, spec
        if self.kind not in _PROBES:
            raise Refused(f"slot {name!r}: no probes for {spec!r}")

    def check(self, value):
        # bool is an int to Python, not to a column: an int slot refuses it as the ORM would not.
        if type(value) is not self.kind and not (
            self.kind is not bool and isinstance(value, self.kind) and not isinstance(value, bool)
        ):
            raise TypeError(
                f"slot {self.name!r} takes {self.kind.__name__}, not {type(value).__name__}"
            )

    def convert(self, value, connection):
        if self.field is None:
            return value
        return self.field.get_db_prep_value(value, connection, prepared=False)


# Field descriptors whose assignment on a new instance only stores the value.
_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


def _builder(model, init_list: list[str]):
    """`(alias, values) -> instance` for rows of `model` with the fields `init_list`: what
    `model.from_db` makes (the values stored, the rest deferred, loaded from `alias`), built
    directly where that is all `Model.__init__` would do, which is half a redemption's model
    work. Django's own `from_db` for a model that changes `__init__` or `from_db`, has init
    signal receivers (connected by the time a statement compiles, at first use) or a field whose
    descriptor does more than store."""
    plain = (
        model.__init__ is models.Model.__init__
        and model.from_db.__func__ is models.Model.from_db.__func__
        and not signals.pre_init.has_listeners(model)
        and not signals.post_init.has_listeners(model)
        and all(type(model.__dict__.get(name)) in _PLAIN_DESCRIPTORS for name in init_list)
    )
    if not plain:
        return lambda alias, values: model.from_db(alias, init_list, values)
    new = model.__new__

    def build(alias, values):
        obj = new(model)
        state = ModelState()
        state.adding, state.db = False, alias
        obj._state = state
        obj.__dict__.update(zip(init_list, values))
        return obj

    return build


class _Related:
    """Django's RelatedPopulator (a select_related model in each row), building with `_builder`."""

    __slots__ = ("take", "pk_at", "build", "related", "local_setter", "remote_setter", "db")

    def __init__(self, populator):
        start, end = populator.cols_start, populator.cols_end
        self.take = populator.reorder_for_init or (lambda row: row[start:end])
        self.pk_at = populator.pk_idx
        self.build = _builder(populator.model_cls, populator.init_list)
        self.related = [_Related(p) for p in populator.related_populators]
        self.local_setter, self.remote_setter = populator.local_setter, populator.remote_setter
        self.db = populator.db

    def populate(self, row, from_obj) -> None:
        data = self.take(row)
        if data[self.pk_at] is None:
            obj = None
        else:
            obj = self.build(self.db, data)
            for related in self.related:
                related.populate(row, obj)
        self.local_setter(from_obj, obj)
        if obj is not None:
            self.remote_setter(obj, from_obj)


class _Compiled:
    """One statement on one database: its SQL, its parameters with the slots' places, and what
    turns rows into results."""

    __slots__ = (
        "sql",
        "params",
        "places",
        "locks",
        "rows_as",
        "model",
        "build",
        "start",
        "end",
        "populators",
        "annotations",
        "converters",
        "width",
    )


def _routed(holder, model, *, write: bool) -> str:
    """The routers' database for `model`, kept on `holder` (a statement): asked without hints, the
    answer stays the same as long as the routers do (a settings change in a test makes new ones)."""
    routers = router.routers
    kept = holder._routed
    if kept is not None and kept[0] is routers:
        return kept[1]
    alias = router.db_for_write(model) if write else router.db_for_read(model)
    holder._routed = (routers, alias)
    return alias


class Statement:
    """A statement defined from a queryset-building function; compiled per database on first
    use."""

    def __init__(self, build, slots: dict, name: str | None = None):
        self.build = build
        self.slots = {name: _Slot(name, spec) for name, spec in slots.items()}
        self.name = name or f"{build.__module__}:{build.__code__.co_firstlineno}"
        self._compiled: dict[tuple, _Compiled] = {}
        self._routed: tuple | None = None
        REGISTRY.append(self)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"

    # -- compiling

    def _probes(self, which: int) -> dict:
        return {
            name: _PROBES[slot.kind][which](n) for n, (name, slot) in enumerate(self.slots.items())
        }

    def _compile_one(self, connection, mode: str, values: dict):
        """(sql, params, what `_finish` needs) of the plain queryset for `values`."""
        raise NotImplementedError

    def _shape(self):
        """The model and whether the queryset writes or locks (the router's question)."""
        raise NotImplementedError

    @property
    def model(self):
        shape = getattr(self, "_shaped", None)
        if shape is None:
            shape = self._shaped = self._shape()
        return shape[0]

    def _alias(self, using: str | None) -> str:
        if using:
            return using
        model = self.model
        return _routed(self, model, write=self._shaped[1])

    def _compiled_for(self, alias: str, mode: str, connection) -> _Compiled:
        key = (alias, connection.vendor, mode)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled.setdefault(key, self._compile(connection, mode))
        return found

    def _compile(self, connection, mode: str) -> _Compiled:
        """Compile with the first probes, then once more per slot with that slot's second probe:
        the parameters that change are the slot's places (so two bool slots are told apart)."""
        first, second = self._probes(0), self._probes(1)
        sql, params, context = self._compile_one(connection, mode, first)
        # Django leaves out a comparison it can decide from an integer alone (one outside its
        # column's range, e.g. a probe against a small integer): small integers must give the
        # same SQL, or the statement would lose that condition for every value.
        if any(slot.kind is int for slot in self.slots.values()):
            small = {
                name: 1 + n if slot.kind is int else first[name]
                for n, (name, slot) in enumerate(self.slots.items())
            }
            sql_small, params_small, _ = self._compile_one(connection, mode, small)
            if sql_small != sql or len(params_small) != len(params):
                raise Refused(f"{self}: the SQL depends on the values, not only their places")
        places, taken = [], set()
        for name, slot in self.slots.items():
            sql_b, params_b, _ = self._compile_one(connection, mode, {**first, name: second[name]})
            if sql_b != sql or len(params_b) != len(params):
                raise Refused(f"{self}: the SQL depends on {name!r}, not only its parameters")
            changed = [
                place
                for place, (a, b) in enumerate(zip(params, params_b))
                if not (comparable(a) == comparable(b) and type(a) is type(b))
            ]
            if not changed:
                raise Refused(f"{self}: slot {name!r} is not among the parameters")
            want = slot.convert(first[name], connection), slot.convert(second[name], connection)
            for place in changed:
                a, b = params[place], params_b[place]
                if place in taken:
                    raise Refused(f"{self}: parameter {place} is made of more than one slot")
                # The backend may wrap a value in a type of its own (psycopg's Int4 for an integer
                # column, with server-side binding): the new values get the same wrapper.
                wrap = None if type(a) is type(want[0]) else type(a)
                if not (
                    type(b) is type(a)
                    and comparable((wrap or _same)(want[0])) == comparable(a)
                    and comparable((wrap or _same)(want[1])) == comparable(b)
                ):
                    raise Refused(f"{self}: parameter {place} is not {name!r} as given")
                places.append((place, slot, wrap))
                taken.add(place)
        out = _Compiled()
        out.sql, out.params, out.places = sql, list(params), places
        self._finish(out, context, connection)
        return out

    def _finish(self, out: _Compiled, context, connection) -> None:
        pass

    # -- running

    def _params(self, compiled: _Compiled, values: dict, connection) -> list:
        if len(values) != len(self.slots):
            raise TypeError(f"{self} takes {sorted(self.slots)}, given {sorted(values)}")
        slots = self.slots
        for name, value in values.items():
            slot = slots[name]  # KeyError: no such slot
            slot.check(value)
        params = compiled.params.copy()
        for place, slot, wrap in compiled.places:
            value = values[slot.name]
            if slot.field is not None:
                value = slot.convert(value, connection)
            params[place] = value if wrap is None else wrap(value)
        return params


class Select(Statement):
    """A SELECT: `all(**values)` is the queryset's rows, `get(**values)` is its `.get()`."""

    def _compile_one(self, connection, mode, values):
        qs = self.build(**values)
        if not isinstance(qs, QuerySet):
            raise Refused(f"{self}: build a QuerySet")
        if qs._prefetch_related_lookups or qs._known_related_objects:
            raise Refused(f"{self}: prefetch_related and related managers are not compiled")
        if qs._iterable_class not in (ModelIterable, ValuesListIterable, FlatValuesListIterable):
            raise Refused(f"{self}: model instances or values_list rows only")
        if qs.query.combinator or qs.query.extra_select:
            raise Refused(f"{self}: no union or extra()")
        if mode == "get":
            qs = _as_get(qs, connection)
        compiler = qs.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        if not sql:
            raise Refused(f"{self}: an empty query")
        return sql, params, (compiler, qs._iterable_class)

    def _shape(self):
        qs = self.build(**self._probes(0))
        return qs.model, qs._for_write

    def _finish(self, out, context, connection):
        compiler, out.rows_as = context
        out.locks = bool(compiler.query.select_for_update)
        out.width = compiler.col_count
        fields = [s[0] for s in compiler.select[: compiler.col_count]]
        if compiler.has_composite_fields(fields):
            raise Refused(f"{self}: composite keys are not compiled")
        out.converters = list(compiler.get_converters(fields).items())
        out.model = None
        if out.rows_as is ModelIterable:
            info = compiler.klass_info
            out.model = info["model"]
            out.start, out.end = info["select_fields"][0], info["select_fields"][-1] + 1
            init_list = [f[0].target.attname for f in compiler.select[out.start : out.end]]
            out.build = _builder(out.model, init_list)
            out.populators = [
                _Related(p) for p in get_related_populators(info, compiler.select, connection.alias)
            ]
            out.annotations = list(compiler.annotation_col_map.items())

    def _run(self, mode: str, values: dict, using: str | None) -> list:
        if None in values.values():  # IS NULL: another statement, the plain queryset's
            qs = self.build(**values)
            qs = qs.using(using) if using else qs
            return list(_as_get(qs, connections[qs.db]) if mode == "get" else qs)
        alias = self._alias(using)
        connection = connections[alias]
        compiled = self._compiled_for(alias, mode, connection)
        if (
            compiled.locks
            and connection.features.has_select_for_update
            and connection.get_autocommit()
        ):
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = self._params(compiled, values, connection)
        cursor = shared_cursor(connection)
        cursor.execute(compiled.sql, params)
        rows = _fetched(cursor, connection)
        if compiled.converters:
            rows = _converted(rows, compiled.converters, connection)
        if compiled.rows_as is FlatValuesListIterable:
            return [row[0] for row in rows]
        if compiled.rows_as is ValuesListIterable:
            width = compiled.width
            return [tuple(row[:width]) for row in rows]
        return [self._instance(compiled, row, alias) for row in rows]

    @staticmethod
    def _instance(compiled: _Compiled, row, alias: str):
        obj = compiled.build(alias, row[compiled.start : compiled.end])
        for populator in compiled.populators:
            populator.populate(row, obj)
        for name, place in compiled.annotations:
            setattr(obj, name, row[place])
        return obj

    def all(self, *, using: str | None = None, **values) -> list:
        return self._run("all", values, using)

    def get(self, *, using: str | None = None, **values):
        """As `QuerySet.get()`: the one row, or DoesNotExist / MultipleObjectsReturned."""
        rows = self._run("get", values, using)
        if len(rows) == 1:
            return rows[0]
        model = self.model
        if not rows:
            raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
        self._many(rows)

    def get_or_none(self, *, using: str | None = None, **values):
        """`get()`, with None for no row (a unique lookup that may find nothing)."""
        rows = self._run("get", values, using)
        if len(rows) > 1:
            self._many(rows)
        return rows[0] if rows else None

    def _many(self, rows):
        model = self.model
        raise model.MultipleObjectsReturned(
            f"get() returned more than one {model._meta.object_name} -- it returned "
            f"{len(rows) if len(rows) < MAX_GET_RESULTS else f'more than {MAX_GET_RESULTS - 1}'}!"
        )


class Update(Statement):
    """`QuerySet.update`: `build(**values)` returns (queryset, {field: value or expression});
    `run(**values)` is the number of rows it changed."""

    def _compile_one(self, connection, mode, values):
        built = self.build(**values)
        if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], QuerySet)):
            raise Refused(f"{self}: build (queryset, {{field: value}})")
        qs, changes = built
        if qs.query.is_sliced or qs.query.combinator or qs.query.order_by:
            raise Refused(f"{self}: no slice, union or ordering in an update")
        # What QuerySet.update() compiles (django/db/models/query.py), without the ordering it
        # refuses above.
        query = qs.query.chain(UpdateQuery)
        query.add_update_values(changes)
        query.clear_select_clause()
        if query.related_updates:
            raise Refused(f"{self}: one table only (no parent-model fields)")
        if query.count_active_tables() > 1 and not connection.features.update_can_self_select:
            raise Refused(f"{self}: this database would read the ids first")
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        if not sql:
            raise Refused(f"{self}: an empty update")
        return sql, params, compiler

    def _shape(self):
        return self.build(**self._probes(0))[0].model, True

    def run(self, *, using: str | None = None, **values) -> int:
        if None in values.values():  # SET … = NULL: another statement, the plain queryset's
            qs, changes = self.build(**values)
            return (qs.using(using) if using else qs).update(**changes)
        alias = self._alias(using)
        connection = connections[alias]
        compiled = self._compiled_for(alias, "update", connection)
        params = self._params(compiled, values, connection)
        with transaction.mark_for_rollback_on_error(using=alias):
            cursor = shared_cursor(connection)
            cursor.execute(compiled.sql, params)
            return cursor.rowcount


def updates_together(*runs: tuple[Update, dict], chained: bool = False) -> list[int]:
    """Compiled updates of different tables, none reading what another writes, given as
    (update, its values): the rows each changed. `chained`: each runs only if the one before
    changed a row (0 then). On PostgreSQL one statement (each in a WITH, counted by the SELECT
    after them; all see the database as the statement began; a chained one's WHERE gains `AND
    EXISTS` the row before, so each must have a WHERE, as a filtered queryset's update has);
    elsewhere, or with a None value (the plain queryset's), each `run` in turn."""
    alias = runs[0][0]._alias(None)
    connection = connections[alias]
    if (
        connection.vendor != "postgresql"
        or len({update.model for update, _ in runs}) != len(runs)
        or any(update._alias(None) != alias or None in v.values() for update, v in runs)
    ):
        changed = []
        for update, values in runs:
            changed.append(update.run(**values) if not (chained and 0 in changed) else 0)
        return changed
    parts, params = [], []
    for n, (update, values) in enumerate(runs):
        compiled = update._compiled_for(alias, "update", connection)
        sql = compiled.sql
        if chained and n:
            if " WHERE " not in sql:
                raise Refused(f"{update}: a chained update needs a WHERE")
            # Django's WHERE joins its conditions with AND at the top (an OR is parenthesised).
            sql += f" AND EXISTS (SELECT 1 FROM u{n - 1})"
        parts.append(f"u{n} AS ({sql} RETURNING 1)")
        params += update._params(compiled, values, connection)
    counts = ", ".join(f"(SELECT COUNT(*) FROM u{n})" for n in range(len(runs)))
    with transaction.mark_for_rollback_on_error(using=alias):
        cursor = shared_cursor(connection)
        cursor.execute(f"WITH {', '.join(parts)} SELECT {counts}", params)
        return list(_fetched(cursor, connection)[0])


class Then:
    """Compiled updates that follow a new row (given as `runs` of update and values): sent in
    `insert_chain`'s own statement on PostgreSQL, or by `run` once the row exists; each update
    with a slot named `key` takes the new row's key there (whatever its values give that slot).
    `changed`: the rows each update changed, once sent."""

    def __init__(self, runs: list[tuple[Update, dict]], *, key: str):
        self.runs, self.key = runs, key
        self.changed: list[int] | None = None

    def run(self, pk: int) -> list[int]:
        """The updates, with `pk` as the key, sent as `updates_together` sends them."""
        key = self.key
        self.changed = updates_together(
            *[(u, {**v, key: pk} if key in u.slots else v) for u, v in self.runs]
        )
        return self.changed

    def unsent(self, connection, key_sql: str) -> list[tuple[str, list]] | None:
        """Each update's SQL and parameters with the key slot's placeholder replaced by the SQL
        expression `key_sql`; None if a statement is not of that plain form."""
        out = []
        for update, values in self.runs:
            alias = update._alias(None)
            if alias != connection.alias or any(
                v is None and k != self.key for k, v in values.items()
            ):
                return None
            compiled = update._compiled_for(alias, "update", connection)
            if self.key not in update.slots:
                out.append((compiled.sql, update._params(compiled, values, connection)))
                continue
            params = update._params(compiled, {**values, self.key: 0}, connection)
            places = [p for p, slot, _ in compiled.places if slot.name == self.key]
            pieces = compiled.sql.split("%s")
            if len(places) != 1 or "%%" in compiled.sql or len(pieces) != len(params) + 1:
                return None  # (a key in two places, or SQL of another shape)
            place = places[0]
            sql = "%s".join(pieces[: place + 1]) + key_sql + "%s".join(pieces[place + 1 :])
            out.append((sql, params[:place] + params[place + 1 :]))
        return out


def shared_cursor(connection):
    """The cursor compiled statements run on: one per database connection, kept while its driver
    connection and its query logging stay the same (a debug cursor while DEBUG or a test captures
    queries). Making Django's and the driver's cursor for each statement was a tenth of the
    redemption's Python time; the execute wrappers and the broken-transaction check still run on
    every execute."""
    kept = getattr(connection, "_statements_cursor", None)
    logged = connection.queries_logged
    raw = connection.connection
    if kept is not None and raw is not None and kept[0] is raw and kept[1] == logged:
        return kept[2]
    cursor = connection.cursor()
    connection._statements_cursor = (connection.connection, logged, cursor)
    return cursor


def _fetched(cursor, connection) -> list:
    """`cursor.fetchall()` from the driver's cursor under the connection's error wrapper: Django's
    cursor wraps each fetch in a new decorated function, made per call."""
    with connection.wrap_database_errors:
        return cursor.cursor.fetchall()


def _as_get(qs: QuerySet, connection) -> QuerySet:
    """The queryset as QuerySet.get() prepares its clone: no ordering, at most 21 rows."""
    if qs.query.can_filter() and not qs.query.distinct_fields:
        qs = qs.order_by()
    if not qs.query.select_for_update or connection.features.supports_select_for_update_with_limit:
        qs.query.set_limits(high=MAX_GET_RESULTS)
    return qs


def _converted(rows, converters, connection) -> list:
    """Rows with the fields' from-database conversions applied (as SQLCompiler.apply_converters;
    the converters were taken from the first connection, and are given the current one)."""
    out = []
    for row in rows:
        row = list(row)
        for place, (convs, expression) in converters:
            value = row[place]
            for convert in convs:
                value = convert(value, expression, connection)
            row[place] = value
        out.append(row)
    return out


class Insert:
    """`Model.objects.bulk_create(objs)` for a few new rows (no key set), compiled once per database
    and row count. On first use the SQL and its parameters are the compiler's own, for those rows,
    in its VALUES form; each call computes the parameters as the compiler does (`pre_save`,
    `get_db_prep_save`) and sets the returned key. Anything else runs the plain bulk_create: a
    value that is an expression, a key already set, more than MAX_ROWS rows, a field with its own
    placeholder, or a database that cannot return the inserted rows."""

    MAX_ROWS = 8

    def __init__(self, model):
        self.model = model
        meta = model._meta
        self.fields = [
            f for f in meta.concrete_fields if not f.generated and not isinstance(f, AutoField)
        ]
        self.returning = meta.db_returning_fields
        self.plain_only = not isinstance(meta.pk, AutoField) or any(
            hasattr(f, "get_placeholder") for f in self.fields
        )
        self._compiled: dict[tuple, _Compiled | None] = {}
        self._routed: tuple | None = None
        self._passes: dict[str, list] = {}
        # Rows given as dicts need no instance when no field's pre_save reads one (create_rows).
        self.by_dict = not any(_pre_save_reads_more(f) for f in self.fields)
        self.attnames = {f.attname for f in self.fields}

    def __repr__(self):
        return f"<Insert {self.model._meta.label}>"

    def create(self, objs: list, *, using: str | None = None) -> list:
        alias = using or _routed(self, self.model, write=True)
        if self.plain_only or not 0 < len(objs) <= self.MAX_ROWS:
            return self._plain(objs, alias)
        connection = connections[alias]
        for obj in objs:
            if obj._is_pk_set() or type(obj) is not self.model:
                return self._plain(objs, alias)
            obj._prepare_related_fields_for_save(operation_name="bulk_create")
        # What SQLInsertCompiler.as_sql does to each value (pre_save_val, prepare_value).
        rows = [self._row(obj, connection, alias) for obj in objs]
        if None in rows:
            return self._plain(objs, alias)
        key = (alias, connection.vendor, len(objs))
        if key not in self._compiled:
            self._compiled.setdefault(key, self._compile(connection, objs, rows))
        compiled = self._compiled[key]
        if compiled is None:  # refused when first compiled
            return self._plain(objs, alias)
        return self.returned(objs, self._execute(compiled, rows, connection), connection)

    def returned(self, objs: list, rows: list, connection) -> list:
        """`objs` saved: the values the insert's RETURNING gave (`rows`, in order) set on them."""
        compiled = self._compiled[(connection.alias, connection.vendor, len(objs))]
        if compiled.converters:
            rows = _converted(rows, compiled.converters, connection)
        for obj, values in zip(objs, rows):
            for value, field in zip(values, self.returning):
                setattr(obj, field.attname, value)
            obj._state.adding, obj._state.db = False, connection.alias
        return objs

    def _plain(self, objs: list, alias: str) -> list:
        return self.model.objects.using(alias).bulk_create(objs)

    def create_rows(self, rows: list[dict], *, using: str | None = None) -> None:
        """`create` of rows nobody reads back, given as dicts of values by attname: once their
        count is compiled (the first call builds instances, to compile), no model instance is
        built per row. A missing value is the field's default, as a new instance would hold."""
        alias = using or _routed(self, self.model, write=True)
        connection = connections[alias]
        compiled = self._compiled.get((alias, connection.vendor, len(rows)))
        values = None
        if (
            compiled is not None
            and self.by_dict
            and not any(r.keys() - self.attnames for r in rows)
        ):
            values = [self._row(None, connection, alias, given=row) for row in rows]
        if values is None or None in values:  # instances, and `create`'s own way
            self.create([self.model(**row) for row in rows], using=alias)
            return
        self._execute(compiled, values, connection)

    def unsent(self, rows: list, connection) -> tuple[str, list] | None:
        """The statement `create_rows` (for dicts of values by attname) or `create` (for new
        instances, which `returned` then finishes) would send for `rows`, and its parameters, not
        sent: for a caller that sends it inside a statement of its own (a WITH, on PostgreSQL).
        None — then insert them the usual way — until that many rows were compiled on this
        connection, when the model is routed to another database, or when a row needs the plain
        bulk_create."""
        compiled = self._compiled.get((connection.alias, connection.vendor, len(rows)))
        if compiled is None or _routed(self, self.model, write=True) != connection.alias:
            return None
        alias = connection.alias
        if all(type(r) is dict for r in rows):
            if not self.by_dict or any(r.keys() - self.attnames for r in rows):
                return None
            values = [self._row(None, connection, alias, given=row) for row in rows]
        else:
            for obj in rows:
                if obj._is_pk_set() or type(obj) is not self.model:
                    return None
                obj._prepare_related_fields_for_save(operation_name="bulk_create")
            values = [self._row(obj, connection, alias) for obj in rows]
        return None if None in values else (compiled.sql, _flat(values))

    def _execute(self, compiled: _Compiled, rows: list, connection) -> list:
        """Send the compiled insert for `rows` (prepared values); the returned columns' rows."""
        with transaction.mark_for_rollback_on_error(using=connection.alias):
            cursor = shared_cursor(connection)
            cursor.execute(compiled.sql, _flat(rows))
            returned = _fetched(cursor, connection)
        if len(returned) != len(rows):
            raise AssertionError(f"{self}: {len(returned)} rows returned for {len(rows)}")
        return returned

    def _row(self, obj, connection, alias: str, given: dict | None = None) -> list:
        """`get_db_prep_save(pre_save(obj))` of each field (or of the `given` row's value); a
        plain int, str, bool or None in one of Django's own integer, text or boolean fields by its
        known conversion (`_passes`). None when a value is an expression."""
        passes = self._passes.get(alias)
        if passes is None:
            passes = self._passes.setdefault(alias, [_passes(f, connection) for f in self.fields])
        row = []
        for field, known in zip(self.fields, passes):
            if given is not None:
                name = field.attname
                value = given[name] if name in given else field.get_default()
            else:  # (a field with known conversions has a pre_save that only reads the value)
                value = getattr(obj, field.attname) if known else field.pre_save(obj, True)
            if known and type(value) in known:
                convert = known[type(value)]
                row.append(value if convert is None else convert(value))
                continue
            value = field.get_db_prep_save(value, connection)
            if hasattr(value, "resolve_expression"):
                return None  # an expression: bulk_create's way
            row.append(value)
        return row

    def _compile(self, connection, objs: list, rows: list) -> _Compiled | None:
        """The compiler's SQL for these rows (their values already pre-saved: raw), if its
        parameters are `rows`, row by row; else None (plain from now on)."""
        features = connection.features
        if not (features.can_return_rows_from_bulk_insert and self.returning):
            return None
        query = InsertQuery(self.model)
        query.insert_values(self.fields, objs, raw=True)
        compiler = query.get_compiler(connection=connection)
        compiler.returning_fields = self.returning
        if type(compiler).assemble_as_sql is not SQLInsertCompiler.assemble_as_sql:
            # VALUES, not PostgreSQL's UNNEST of one array per column: for a few rows the arrays
            # cost more (psycopg writes each as escaped text) than the plan they save, which
            # prepared statements save anyway.
            compiler.assemble_as_sql = MethodType(SQLInsertCompiler.assemble_as_sql, compiler)
        statements = compiler.as_sql()
        if len(statements) != 1:
            return None
        sql, params = statements[0]
        given = [(type(p), comparable(p)) for p in params]
        if [(type(p), comparable(p)) for p in _flat(rows)] == given:
            out = _Compiled()
            out.sql = sql
            cols = [f.get_col(self.model._meta.db_table) for f in self.returning]
            out.converters = list(compiler.get_converters(cols).items())
            return out
        return None


def _pre_save_reads_more(field) -> bool:
    """Whether the field's pre_save does more than read its value: an auto_now date, or any
    pre_save of its own."""
    own = type(field).pre_save
    if isinstance(field, models.DateField) and own in (
        models.DateField.pre_save,
        models.DateTimeField.pre_save,
    ):
        return field.auto_now or field.auto_now_add
    return own is not Field.pre_save


# A field's conversion of a plain value, for Django's own fields that take one: an int (or an int
# key), a str, a bool. Its class must keep Field.pre_save and Django's own preparation methods, so
# the conversion of one probe value is that of every value of its type (an int stays itself, or
# becomes psycopg's Int4… on PostgreSQL); None stays None.
_PLAIN = {
    int: (7, (models.IntegerField, models.AutoField)),
    str: ("x", (models.CharField, models.TextField)),
    bool: (True, (models.BooleanField,)),
}
_PREPARE = ("get_db_prep_save", "get_db_prep_value", "get_prep_value", "to_python")


def _django_own(field) -> bool:
    return all(
        getattr(type(field), name).__module__.startswith("django.db.models.fields")
        for name in _PREPARE
    )


def _passes(field, connection) -> dict | None:
    """{type: None (the value itself) or the conversion} for `Insert._row`; None: none known."""
    target = field.target_field if field.is_relation and field.many_to_one else field
    if _pre_save_reads_more(field) or not (_django_own(field) and _django_own(target)):
        return None
    found = {}
    for kind, (probe, families) in _PLAIN.items():
        if not isinstance(target, families):
            continue
        out = field.get_db_prep_save(probe, connection)
        if out is probe:
            found[kind] = None
        elif type(out) is not kind and type(out)(probe) == out:
            found[kind] = type(out)
    if found and field.get_db_prep_save(None, connection) is None:
        found[type(None)] = None
        return found
    return None


def _flat(rows: list) -> list:
    return [value for row in rows for value in row]  # INSERT … VALUES (%s, …), (%s, …)


_INSERTS: dict[type, Insert] = {}


def inserter(model) -> Insert:
    """The model's compiled insert (one per model and process)."""
    found = _INSERTS.get(model)
    if found is None:
        found = _INSERTS.setdefault(model, Insert(model))
    return found


def insert(objs: list, *, using: str | None = None) -> list:
    """`bulk_create(objs)` of new rows of one model, compiled (`Insert`)."""
    objs = list(objs)
    return inserter(type(objs[0])).create(objs, using=using) if objs else objs


def insert_rows(model, rows: list[dict], *, using: str | None = None) -> None:
    """`insert` of new rows given as dicts of values by attname, nobody reading them back."""
    if rows:
        inserter(model).create_rows(rows, using=using)


def insert_chain(
    steps: list[tuple[type, list, str | None]],
    *,
    taken: tuple[str, list, str] | None = None,
    then: Then | None = None,
    using: str | None = None,
) -> bool:
    """PostgreSQL: new rows of several models in one statement, each step's rows pointing at the
    one row of the step before through their foreign key: an invoice, its line, the line's taxes.
    `steps`: (model, rows, the attname of that key; None for the first step) — rows are new
    instances (their keys set afterwards, as `insert` sets them, and the key to the step before),
    or, in the last step, dicts of values by attname (nobody reads them back). Each step's insert
    is its compiled one (`Insert.unsent`), in a WITH, its key's value taken from the step before.
    `taken`: (a statement returning one value, e.g. an UPDATE … RETURNING, its parameters, the
    attname of the first step's one row that value goes to), run first in the same WITH; the
    row's instance gets the value. `then`: updates that follow the first step's row, last in the
    same WITH, its key in their key slot (`Then.changed` holds what each changed).

    False, nothing sent, when it cannot: another database, a step not compiled yet for its number
    of rows (the usual inserts compile them), a step before another (or given `taken`) with more
    than one row, a model whose insert returns more than its key."""
    first = inserter(steps[0][0])
    connection = connections[using or _routed(first, first.model, write=True)]
    if connection.vendor != "postgresql" or any(
        not rows or (len(rows) > 1 and (n < len(steps) - 1 or (taken and n == 0)))
        for n, (_, rows, _) in enumerate(steps)
    ):
        return False
    qn = connection.ops.quote_name
    parts, params, inserters = [], [], []
    if taken is not None:
        parts.append(f"t AS ({taken[0]})")
        params += taken[1]
    for n, (model, rows, parent) in enumerate(steps):
        found = inserter(model)
        unsent = found.unsent(rows, connection) if len(found.returning) == 1 else None
        if unsent is not None and parent is not None:
            field = model._meta.get_field(parent)  # (an attname finds its field too)
            if not field.is_relation or field.target_field is not inserters[-1].returning[0]:
                return False
            key = f"(SELECT {qn(field.target_field.column)} FROM s{n - 1})"
            unsent = _rewired(*unsent, len(rows), found, parent, key)
        if unsent is not None and taken is not None and n == 0:
            unsent = _rewired(*unsent, 1, found, taken[2], "(SELECT * FROM t)")
        if unsent is None:
            return False
        parts.append(f"s{n} AS ({unsent[0]})")
        params += unsent[1]
        inserters.append(found)
    updates = []
    if then is not None:
        updates = then.unsent(connection, f"(SELECT {qn(first.returning[0].column)} FROM s0)")
        if updates is None:
            return False
    for n, (sql, values) in enumerate(updates):
        parts.append(f"u{n} AS ({sql} RETURNING 1)")
        params += values
    returned = " UNION ALL ".join(
        (["SELECT -1, * FROM t"] if taken is not None else [])
        + [f"SELECT {n}, {qn(i.returning[0].column)} FROM s{n}" for n, i in enumerate(inserters)]
        + [f"SELECT {-2 - n}, COUNT(*) FROM u{n}" for n in range(len(updates))]
    )
    with transaction.mark_for_rollback_on_error(using=connection.alias):
        cursor = shared_cursor(connection)
        cursor.execute(f"WITH {', '.join(parts)} {returned}", params)
        got = _fetched(cursor, connection)
    if taken is not None:
        setattr(steps[0][1][0], taken[2], next(value for step, value in got if step == -1))
    if then is not None:
        counts = dict((step, value) for step, value in got if step <= -2)
        then.changed = [counts[-2 - n] for n in range(len(updates))]
    for n, ((_, rows, parent), found) in enumerate(zip(steps, inserters)):
        keys = [(key,) for step, key in got if step == n]  # each step's in its insert's order
        if len(keys) != len(rows):
            raise AssertionError(f"{found}: {len(keys)} rows returned for {len(rows)}")
        if type(rows[0]) is dict:
            continue
        if parent is not None:
            for obj in rows:
                setattr(obj, parent, steps[n - 1][1][0].pk)
        found.returned(rows, keys, connection)
    return True


def _rewired(sql: str, values: list, count: int, found: Insert, attname: str, key: str):
    """The compiled `INSERT … VALUES (%s, …), …` of `found` with each row's `attname` value taken
    from the SQL expression `key`, and the values without it; None if the SQL is not of that
    plain form."""
    attnames = [f.attname for f in found.fields]
    if attname not in attnames:
        return None
    width, place = len(attnames), attnames.index(attname)
    rewired = _rewired_sql(sql, count, width, place, key)
    if rewired is None:
        return None
    return rewired, [v for i, v in enumerate(values) if i % width != place]


@functools.lru_cache(maxsize=256)
def _rewired_sql(sql: str, count: int, width: int, place: int, key: str) -> str | None:
    plain = "(" + ", ".join(["%s"] * width) + ")"
    head, found, tail = sql.partition(" VALUES " + ", ".join([plain] * count))
    if not found or "%s" in head or "%s" in tail:
        return None
    row = "(" + ", ".join("%s" if i != place else key for i in range(width)) + ")"
    return f"{head} VALUES {', '.join([row] * count)}{tail}"


def create(model, **fields):
    """`Model.objects.create(**fields)`, compiled (`Insert`); no save() or its signals."""
    return insert([model(**fields)])[0]


def select(build, **slots) -> Select:
    """A compiled SELECT: `build(**slots)` returns the queryset; `slots` name each value's type
    (int, str, bool, date, datetime, Decimal) or its model field."""
    return Select(build, slots)


def prefetched(instance, name: str, rows: list) -> None:
    """Leave `rows` (read by a compiled Select) on `instance` as `prefetch_related(name)` would:
    `instance.<name>.all()` answers them without a query, and each row's foreign key back to
    `instance` is set (what Django's prefetch_one_level and the reverse manager's
    get_prefetch_querysets leave behind)."""
    manager = getattr(instance, name)
    for row in rows:
        manager.field.set_cached_value(row, instance)
    qs = manager.get_queryset()
    qs._result_cache, qs._prefetch_done = rows, True
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    cache[manager.field.remote_field.cache_name] = qs


def locked_row(model, *related: str) -> Select:
    """One row by its key under `SELECT … FOR UPDATE` (of its own table only), with `related` joined
    in: the row locks of the busiest services, called `.get(pk=…)`."""

    def build(pk):
        qs = model.objects.select_for_update(of=("self",))
        return (qs.select_related(*related) if related else qs).filter(pk=pk)

    with_ = f" with {', '.join(related)}" if related else ""
    return Select(build, {"pk": int}, name=f"{model._meta.label} locked{with_}")


def update(build, **slots) -> Update:
    """A compiled `QuerySet.update`: `build(**slots)` returns (queryset, {field: value})."""
    return Update(build, slots)
