"""The billing job's first half (SPEC 6.2): invoice every due cycle of every active membership,
once.

Memberships are taken in chunks of CHUNK, each chunk one transaction under its passes' locks. The
common case — one cycle due, not paused — is issued for the whole chunk in a few statements (one
insert per table); anything else (a pause, cycles missed while the job did not run, a cycle made
ahead for a booking) goes through `memberships.services.membership_cycles_issue` one membership
at a time, in the same transaction. The (pass, seq) constraint stops a twin run that slipped past
the locks (SQLite): its chunk rolls back and is redone one membership at a time, skipping what the
other run made.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery

from carnet.clinic.selectors import clinic_today
from carnet.core.bulk import add_to, insert
from carnet.passes.cycles import cycle_paused, cycle_start, next_cycle, row_new
from carnet.passes.invoicing import pass_invoices_issue
from carnet.passes.locks import lock_pass
from carnet.passes.models import Pass, PassInvoice

from .services import BILLED, membership_cycles_issue, rollover

CHUNK = (
    1000  # memberships per transaction: locks held well under a second, a crash redoes one chunk
)

Status = Pass.Status
# What issuing a cycle reads of a membership (loading all of its columns was a
# tenth of the job's time).
FIELDS = (
    "kind",
    "status",
    "template",
    "patient",
    "name",
    "instalments",
    "income_category",
    "sold_by",
    "location",
    "cycle",
    "start_date",
    "uses_per_cycle",
    "cycle_price_minor",
    "ends_after",
    "term_cycles",
    "rollover",
    "rollover_cap",
    "payment_mode",
    "card",
    "deferred_minor",
    "tax_inclusive",
    "anchor_date",
    "anchor_index",
)


def cycles_issue(*, today: dt.date | None = None) -> list[int]:
    """Invoice every due cycle; returns the new cycle rows' ids."""
    today = today or clinic_today()
    due = memberships_due(today)
    issued = []
    for n in range(0, len(due), CHUNK):
        chunk = due[n : n + CHUNK]
        try:
            with transaction.atomic():
                issued += _issue_chunk(chunk, today)
        except IntegrityError:
            for pk in chunk:
                issued += cycles_issue_one(pk, today)
    return issued


def memberships_due(today: dt.date) -> list[int]:
    """Active memberships with something to invoice: an uninvoiced cycle due by today, or no cycle
    running past today (so the next one may start by today). The rest are not even locked."""
    rows = PassInvoice.objects.filter(sold_pass=OuterRef("pk"))
    waiting = Exists(rows.filter(BILLED, invoice__isnull=True, due_on__lte=today))
    running = Exists(rows.filter(period_end__gt=today))
    return list(
        Pass.objects.filter(kind=Pass.Kind.MEMBERSHIP, status=Status.ACTIVE, start_date__lte=today)
        .filter(Q(waiting) | ~Q(running))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def cycles_issue_one(pk: int, today: dt.date) -> list[int]:
    try:
        with transaction.atomic():
            sold = lock_pass(pk)
            if sold.status == Status.ACTIVE:
                return [row.pk for row in membership_cycles_issue(sold, today=today)]
    except IntegrityError:
        pass  # another run made this cycle first
    return []


def _issue_chunk(pks: list[int], today: dt.date) -> list[int]:
    # Each cycle is taxed with the membership's own taxes, copied at sale (SPEC 5.2), in one query.
    passes = list(
        Pass.objects.select_for_update()
        .filter(pk__in=pks, status=Status.ACTIVE)
        .only(*FIELDS)
        .prefetch_related("pauses", "taxes")
        .order_by("pk")
    )
    # Counts, not the cycle rows themselves: a membership two years old has 24 of them.
    counts = {
        c["sold_pass_id"]: c
        for c in PassInvoice.objects.filter(sold_pass_id__in=[p.pk for p in passes])
        .order_by()
        .values("sold_pass_id")
        .annotate(
            made=Count("id"),
            billed=Count("id", filter=Q(skipped=False)),
            waiting=Count("id", filter=BILLED & Q(invoice__isnull=True, due_on__lte=today)),
        )
    }
    last = (
        PassInvoice.objects.filter(sold_pass=OuterRef("sold_pass"), skipped=False)
        .order_by("-seq")
        .values("seq")
    )
    previous = {
        r.sold_pass_id: r
        for r in PassInvoice.objects.filter(  # what rollover moves uses from
            sold_pass_id__in=[p.pk for p in passes if p.rollover],
            skipped=False,
            seq=Subquery(last[:1]),
        )
    }
    new, moved, slow = [], [], []
    for sold in passes:
        count = counts.get(sold.pk, {"made": 0, "billed": 0, "waiting": 0})
        if count["waiting"]:
            slow.append(sold)
            continue
        needed = next_cycle(sold, made=count["made"], billed=count["billed"])
        if needed is None or needed[1] > today:
            continue
        seq, start = needed
        if (
            cycle_paused(sold, seq) or cycle_start(sold, seq) <= today
        ):  # a pause, or more than one cycle due
            slow.append(sold)
            continue
        rolled = rollover(sold, previous.get(sold.pk), sold.uses_per_cycle)
        if rolled:
            moved.append((previous[sold.pk], rolled))
        row = row_new(sold, seq, start, rolled=rolled)
        row.sold_pass = sold
        if sold.payment_mode == Pass.PaymentMode.AUTOMATIC and sold.card_id:
            row.next_attempt_on = today  # the current cycle is charged by the job's second half
        new.append(row)
    if new:
        pass_invoices_issue(new, actor=None, action=None, own_location=True)
        add_to(PassInvoice, "uses_allowed", [(row.pk, -rolled) for row, rolled in moved])
        insert(PassInvoice, new)
        add_to(Pass, "deferred_minor", [(row.sold_pass_id, row.net_minor) for row in new])
    return [row.pk for row in new] + [
        row.pk for sold in slow for row in membership_cycles_issue(sold, today=today)
    ]
