"""Row locks, in the project's fixed order: invoice → pass → gift card (CONVENTIONS 5).

PostgreSQL: SELECT … FOR UPDATE. SQLite: BEGIN IMMEDIATE already serialises writers; the
counters are also moved by conditional UPDATEs and held by check constraints.
"""

from carnet.core import statements

from .models import Pass, PassInvoice, PassItem


def lock_passes(pks) -> dict[int, Pass]:
    rows = Pass.objects.select_for_update(of=("self",)).filter(pk__in=set(pks)).order_by("pk")
    return {p.pk: p for p in rows}


# Compiled once per process (core.statements): every attach and arrival locks a pass; with the
# rules, its template too (its place, hours and cap are rules, issue 23).
_LOCKED = statements.locked_row(Pass)
_LOCKED_WITH_TEMPLATE = statements.locked_row(Pass, "template")
# What `prefetch_related("items", Prefetch("pass_invoices", …invoice))` reads, compiled.
_ITEMS = statements.select(
    lambda sold_pass: PassItem.objects.filter(sold_pass_id=sold_pass), sold_pass=int
)
_PAID = statements.select(
    lambda sold_pass: PassInvoice.objects.select_related("invoice").filter(sold_pass_id=sold_pass),
    sold_pass=int,
)


def lock_pass(pk: int, *, with_rules: bool = False) -> Pass:
    """`with_rules` also loads what the eligibility check reads, one query each: the items and, for
    a package, its instalments with their invoices (a membership's are its cycles, read by date)."""
    if with_rules:
        try:
            sold = _LOCKED_WITH_TEMPLATE.get(pk=pk)
        except Pass.DoesNotExist:
            # PostgreSQL re-checks a row it waited for against the joined template row as it was: a
            # plan change that committed meanwhile (memberships/plan_change.py) moved the pass to
            # another template, so the row seems gone. Asked again, the statement sees both as they
            # are now.
            sold = _LOCKED_WITH_TEMPLATE.get(pk=pk)
    else:  # one row by its key: no ORDER BY needed
        sold = _LOCKED.get(pk=pk)
    if with_rules:
        statements.prefetched(sold, "items", _ITEMS.all(sold_pass=pk))
        if sold.kind == Pass.Kind.PACKAGE:
            statements.prefetched(sold, "pass_invoices", _PAID.all(sold_pass=pk))
    return sold
