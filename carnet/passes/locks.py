"""Row locks, in the project's fixed order: invoice → pass → gift card (CONVENTIONS 5).

PostgreSQL: SELECT … FOR UPDATE. SQLite: BEGIN IMMEDIATE already serialises writers; the
counters are also moved by conditional UPDATEs and held by check constraints.
"""

from .models import Pass


def lock_passes(pks) -> dict[int, Pass]:
    rows = Pass.objects.select_for_update(of=("self",)).filter(pk__in=set(pks)).order_by("pk")
    return {p.pk: p for p in rows}


def lock_pass(pk: int) -> Pass:
    return lock_passes([pk])[pk]
