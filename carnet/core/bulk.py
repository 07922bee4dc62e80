"""Set-based writes shared by the daily jobs."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import F


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
                model.objects.filter(pk__in=pks[n:n + 1000]).update(**{field: F(field) + amount})
