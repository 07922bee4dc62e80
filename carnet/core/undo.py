"""Taking back rows an import created (carnet.imports), for each app's own models."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import ProtectedError

from . import activity
from .bulk import chunks
from .errors import Conflict


def imported_rows_remove(
    *,
    actor,
    model,
    pks: list[int],
    in_use: Callable[[list[int]], list[str]],
    children: tuple[tuple[type, str], ...] = (),
) -> None:
    """Inside the caller's transaction: lock the rows (by pk, the project's order), refuse with the
    reasons `in_use` gives if any has been used since, else log and delete them (and `children`,
    (model, foreign key name) pairs, first). The ledger keeps naming them as the source of their
    reversed opening balances; nothing else refers to an unused row."""
    for part in chunks(pks):
        list(model.objects.select_for_update(of=("self",)).filter(pk__in=part).order_by("pk"))
    problems = in_use(pks)
    if problems:
        raise Conflict(
            f"This import cannot be undone: {'; '.join(problems[:5])}.", code="import_used"
        )
    for part in chunks(pks):
        activity.record_many(
            actor=actor, verb="import undone", objs=list(model.objects.filter(pk__in=part))
        )
        for child, key in children:
            child.objects.filter(**{f"{key}__in": part}).delete()
        try:
            model.objects.filter(pk__in=part).delete()
        except (
            ProtectedError
        ):  # something new refers to one of them (on SQLite no row lock held it back)
            raise Conflict(
                "This import cannot be undone: some of what it created has just been used.",
                code="import_used",
            ) from None
