"""Benchmark 3: the recurring billing job issuing N membership cycles vs a bulk-insert baseline.

Set-up (not timed): one monthly membership (6,000 + 13% tax, 2 uses a cycle) is sold with
`membership_sell`, then copied in SQL to N memberships starting today with no cycle rows, so each
has exactly one cycle due today. This benchmark's memberships left by earlier runs are marked
deleted first (the job walks every active membership).

Timed: `carnet.passes.memberships.cycle_billing.cycles_issue(today=…)` in-process (the first half of
`passes_daily`; the second half charges automatic memberships, and these are manual).
Baseline: the same rows for another N copies with set-based SQL in one transaction — the cycle rows,
the invoices (numbers from the counter), their lines and line taxes, the ledger transactions and
their three postings each, the activity-log rows, and the passes' deferred amounts.
"""

from __future__ import annotations

import datetime as dt
import time

from common import base, emit, machine, patients
from pass_report import _copy_pass, _reserve, _rest

PREFIX = "Bench job membership"


def _template(b):
    from carnet.core import clock
    from carnet.passes.models import EligibleItem, PassTemplate

    template = PassTemplate.objects.filter(name=PREFIX).first()
    if template is None:
        now = clock.now()
        template = PassTemplate.objects.create(
            kind="membership",
            name=PREFIX,
            price_minor=6000,
            cycle="monthly",
            uses_per_cycle=2,
            income_category=b["category"],
            created_at=now,
            updated_at=now,
        )
        template.taxes.set([b["tax"]])
        EligibleItem.objects.create(
            template=template, treatment=b["treatment"], additional_charge_minor=0
        )
    return template


def _memberships(b, template, count: int, today: dt.date) -> tuple[int, list[int]]:
    """A sold membership (its first cycle issued by the sale) and `count` copies of it due today."""
    from django.db import connection, transaction

    from carnet.passes.memberships.services import membership_sell
    from carnet.passes.models import Pass

    people = patients("BenchJob", 500)
    source = membership_sell(
        actor=b["owner"].user, patient=people[0], template=template, start_date=today
    )
    owners = [people[n % len(people)].pk for n in range(count)]
    before = set(Pass.objects.filter(template=template).values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cur:
        _copy_pass(cur, source.pk, owners)
        cur.execute(
            """UPDATE passes_pass SET deferred_minor = 0, recognised_minor = 0, start_date = %s
                       WHERE template_id = %s AND id > %s""",
            [today, template.pk, max(before)],
        )  # the copies
    Pass.objects.filter(pk=source.pk).update(status="deleted")  # not part of the job
    copies = sorted(
        set(Pass.objects.filter(template=template).values_list("pk", flat=True)) - before
    )
    with (
        connection.cursor() as cur
    ):  # fresh statistics, as autovacuum keeps them on a live database
        cur.execute("ANALYZE passes_pass")
        cur.execute("ANALYZE passes_passinvoice")
        # The set-up's own writes (WAL) would otherwise trigger a checkpoint inside the timed part;
        # both the job and the baseline start from a fresh one.
        cur.execute("CHECKPOINT")
    return source.pk, copies


def _baseline(source_id: int, copies: list[int], today: dt.date) -> float:
    """The job's rows for `copies`, set-based, in one transaction; returns seconds."""
    from django.db import connection, transaction

    from carnet.billing.models import Invoice, InvoiceLine, InvoiceLineTax
    from carnet.core.models import ActivityLog
    from carnet.ledger.models import JournalTransaction, Posting
    from carnet.passes.models import PassInvoice

    row = PassInvoice.objects.select_related("invoice").get(sold_pass_id=source_id, seq=1)
    line = row.invoice.lines.get()
    tax_line = line.line_taxes.get()
    count = len(copies)
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "SELECT code, id FROM ledger_account WHERE code IN "
            "('accounts_receivable', 'deferred_revenue_memberships', %s)",
            [f"tax_payable:{tax_line.tax_id}"],
        )
        acct = dict(cur.fetchall())
        c0 = _reserve(cur, "passes_passinvoice", count)
        i0 = _reserve(cur, "billing_invoice", count)
        l0 = _reserve(cur, "billing_invoiceline", count)
        j0 = _reserve(cur, "ledger_journaltransaction", count)
        cur.execute(
            "UPDATE billing_invoicecounter SET next_number = next_number + %s WHERE id = 1 "
            "RETURNING next_number - %s",
            [count, count],
        )
        n0 = cur.fetchone()[0]
        cur.execute(
            "CREATE TEMP TABLE bench_due ON COMMIT DROP AS SELECT (n - 1)::int AS n, "
            "p.id AS pass_id, p.patient_id FROM unnest(%s::bigint[]) WITH ORDINALITY AS "
            "t(pid, n) JOIN passes_pass p ON p.id = t.pid",
            [copies],
        )
        cols, vals = _rest(
            Invoice,
            "id, number, patient_id, location_id, staff_id, invoice_date, created_at, "
            "subtotal_minor, tax_minor, total_minor, applied_minor, notes",
        )
        cur.execute(
            f"""INSERT INTO billing_invoice (id, number, patient_id, location_id, staff_id,
                           invoice_date, created_at, subtotal_minor, tax_minor, total_minor,
                           applied_minor, notes{cols})
                       SELECT %s + n, %s + n, patient_id, NULL, NULL, %s, now(), %s, %s, %s,
                              0, ''{vals} FROM bench_due""",
            [
                i0,
                n0,
                today,
                row.invoice.subtotal_minor,
                row.invoice.tax_minor,
                row.invoice.total_minor,
            ],
        )
        cols, vals = _rest(
            InvoiceLine,
            "id, invoice_id, kind, description, quantity, unit_price_minor, adjustment_minor, "
            "tax_inclusive, income_category_id, net_minor, tax_minor, total_minor",
        )
        cur.execute(
            f"""INSERT INTO billing_invoiceline (id, invoice_id, kind, description, quantity,
                           unit_price_minor, adjustment_minor, tax_inclusive, income_category_id,
                               net_minor, tax_minor, total_minor{cols})
                       SELECT %s + n, %s + n, %s, %s, 1, %s, 0, %s, %s, %s, %s,
                              %s{vals} FROM bench_due""",
            [
                l0,
                i0,
                line.kind,
                line.description,
                line.unit_price_minor,
                line.tax_inclusive,
                line.income_category_id,
                line.net_minor,
                line.tax_minor,
                line.total_minor,
            ],
        )
        cols, vals = _rest(InvoiceLineTax, "line_id, tax_id, rate, amount_minor")
        cur.execute(
            f"""INSERT INTO billing_invoicelinetax (line_id, tax_id, rate, amount_minor{cols})
                       SELECT %s + n, %s, %s, %s{vals} FROM bench_due""",
            [l0, tax_line.tax_id, tax_line.rate, tax_line.amount_minor],
        )
        cols, vals = _rest(
            PassInvoice,
            "id, sold_pass_id, seq, due_on, unit_price_minor, amount_minor, net_minor, "
            "invoice_id, charge_attempts, last_error, period_start, period_end, uses_allowed, "
            "used_count, recognised_minor, skipped",
        )
        cur.execute(
            f"""INSERT INTO passes_passinvoice (id, sold_pass_id, seq, due_on, unit_price_minor,
                           amount_minor, net_minor, invoice_id, charge_attempts, last_error,
                           period_start, period_end, uses_allowed, used_count, recognised_minor,
                           skipped{cols})
                       SELECT %s + n, pass_id, 1, %s, %s, %s, %s, %s + n, 0, '', %s, %s, %s,
                              0, 0, false{vals}
                       FROM bench_due""",
            [
                c0,
                today,
                row.unit_price_minor,
                row.amount_minor,
                row.net_minor,
                i0,
                row.period_start,
                row.period_end,
                row.uses_allowed,
            ],
        )
        cols, vals = _rest(JournalTransaction, "id, at, kind, source_type, source_id, memo")
        cur.execute(
            f"""INSERT INTO ledger_journaltransaction (id, at, kind, source_type, source_id,
                           memo{cols})
                       SELECT %s + n, now(), 'invoice_issued', 'billing.invoice', (%s + n)::text,
                              'Invoice #' || (%s + n){vals} FROM bench_due""",
            [j0, i0, n0],
        )
        cols, vals = _rest(Posting, "transaction_id, account_id, patient_id, amount")
        cur.execute(
            f"""INSERT INTO ledger_posting (transaction_id, account_id, patient_id, amount{cols})
                       SELECT %s + n, %s, patient_id, %s{vals} FROM bench_due
                       UNION ALL SELECT %s + n, %s, NULL, %s{vals} FROM bench_due
                       UNION ALL SELECT %s + n, %s, NULL, %s{vals} FROM bench_due""",
            [
                j0,
                acct["accounts_receivable"],
                row.invoice.total_minor,
                j0,
                acct["deferred_revenue_memberships"],
                -row.invoice.subtotal_minor,
                j0,
                acct[f"tax_payable:{tax_line.tax_id}"],
                -row.invoice.tax_minor,
            ],
        )
        cols, vals = _rest(
            ActivityLog,
            "at, actor_id, actor_name, verb, object_type, object_id, object_repr, after",
        )
        cur.execute(
            f"""INSERT INTO core_activitylog (at, actor_id, actor_name, verb, object_type,
                           object_id, object_repr, after{cols})
                       SELECT now(), NULL, 'system', 'created', 'billing.invoice', (%s + n)::text,
                              'Invoice #' || (%s + n), '{{}}'::jsonb{vals} FROM bench_due""",
            [i0, n0],
        )
        cur.execute(
            """UPDATE passes_pass p SET deferred_minor = deferred_minor + %s
                       FROM bench_due d WHERE p.id = d.pass_id""",
            [row.net_minor],
        )
    return time.perf_counter() - t0


def run(args) -> dict:
    from carnet.clinic.selectors import clinic_get
    from carnet.core import clock
    from carnet.passes.memberships.cycle_billing import cycles_issue
    from carnet.passes.models import Pass

    b = base()
    size = args.memberships or (2_000 if args.quick else 100_000)
    today = clock.today(clinic_get().time_zone)
    template = _template(b)
    Pass.objects.filter(template=template, status="active").update(
        status="deleted"
    )  # earlier runs' leftovers
    t0 = time.perf_counter()
    source, copies = _memberships(b, template, size, today)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    issued = cycles_issue(today=today)
    job_s = time.perf_counter() - t0
    Pass.objects.filter(pk__in=copies).update(status="deleted")
    _, copies2 = _memberships(b, template, size, today)
    Pass.objects.filter(pk__in=copies2).update(
        status="deleted"
    )  # the baseline writes their rows itself
    base_s = _baseline(source, copies2, today)
    ok = len(issued) == size and job_s < 60
    ratio = round(job_s / base_s, 1) if base_s else None
    result = {
        "benchmark": "billing_job",
        "timed": "carnet.passes.memberships.cycle_billing.cycles_issue",
        "memberships": size,
        "cycles_issued": len(issued),
        "job_s": round(job_s, 2),
        "cycles_per_s": round(len(issued) / job_s, 1) if job_s else None,
        "bulk_insert_s": round(base_s, 2),
        "ratio_job_to_bulk": ratio,
        "setup_s": round(setup_s, 1),
        "projected_100k_s": round(job_s * 100_000 / size, 0) if size else None,
        "target": "< 60 s for 100,000 cycles",
        "pass": ok and size >= 100_000,
        "machine": machine(),
    }
    emit(
        result,
        f"billing job: {len(issued):,} cycles in {job_s:.1f} s ({result['cycles_per_s']}/s) "
        f"vs bulk insert {base_s:.2f} s (×{ratio}); "
        f"100k projected {result['projected_100k_s']:.0f} s — "
        f"{'PASS' if result['pass'] else 'MISS'} (target <60 s at 100,000)",
    )
    return result
