"""Benchmark 2: the pass-usage report (one-month filter) over generated redemptions vs raw SQL.

The data set (default 1,000,000 posted redemptions over two years, 200 patients each with one
package, 4 practitioners) is generated with INSERT … SELECT generate_series into the real tables —
arrived appointments, their visits, the visits' invoices (numbers taken from the invoice
counter) and the redemptions — so every constraint and foreign key holds. It is built once and
reused (`--rebuild` regenerates it; a different size builds another set next to it).

The timed query is `carnet.reports.pass_reports.pass_usage_report` (the selector behind the report
page, its CSV and its API: one query plus building each row's dict), as the account owner.
The baseline is hand-written SQL returning the same rows, fetched with psycopg.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

from common import base, dsn, emit, machine, patients

PATIENTS = 200
DAYS = 730
FIRST_DAY = dt.date(2024, 1, 1)
MONTH = (
    dt.date(2025, 3, 1),
    dt.date(2025, 3, 31),
)  # the filtered month, inside the generated range


def _template_name(size: int) -> str:
    return f"Bench report pack {size}"


def _reserve(cur, table: str, count: int) -> int:
    """The first of `count` consecutive ids taken from the table's sequence."""
    cur.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    seq = cur.fetchone()[0]
    cur.execute("SELECT nextval(%s)", [seq])
    first = cur.fetchone()[0]
    cur.execute("SELECT setval(%s, %s)", [seq, first + count])
    return first


def _rest(model, columns: str) -> tuple[str, str]:
    """The columns an INSERT below does not name, filled with the model's defaults: a column
    added with a default later needs no change here (carnet.core.bulk.default_columns)."""
    from carnet.core.bulk import default_columns

    return default_columns(model, columns.split(","))


def _copy_pass(cur, source_id: int, patient_ids: list[int]) -> None:
    """One copy of the sold package `source_id` (and its item) per patient, in SQL."""
    cur.execute("""SELECT column_name FROM information_schema.columns
                   WHERE table_name = 'passes_pass' AND column_name NOT IN ('id', 'patient_id')""")
    cols = ", ".join(f'"{r[0]}"' for r in cur.fetchall())
    cur.execute(
        f"""INSERT INTO passes_pass ({cols}, patient_id)
                    SELECT {cols}, p FROM passes_pass, unnest(%s::bigint[]) AS p WHERE id = %s""",
        [patient_ids, source_id],
    )
    cur.execute(
        """INSERT INTO passes_passitem (sold_pass_id, treatment_id, additional_charge_minor,
                       compensation_minor, "limit", used_count)
                   SELECT p.id, i.treatment_id, i.additional_charge_minor, i.compensation_minor,
                          i."limit", 0
                   FROM passes_pass p JOIN passes_passitem i ON i.sold_pass_id = %s
                   WHERE p.template_id = (SELECT template_id FROM passes_pass WHERE id = %s)
                     AND p.id <> %s
                     AND NOT EXISTS (
                         SELECT 1 FROM passes_passitem x WHERE x.sold_pass_id = p.id
                     )""",
        [source_id, source_id, source_id],
    )


def _drop(cur, template) -> None:
    """Remove a data set's redemptions, visits, appointments and invoices (its packages stay)."""
    cur.execute(
        """CREATE TEMP TABLE bench_old ON COMMIT DROP AS
                   SELECT r.id AS r, r.visit_id AS v, ap.appointment_id AS a, ap.invoice_id AS i
                   FROM passes_redemption r JOIN passes_pass p ON p.id = r.sold_pass_id
                   JOIN scheduling_visit ap ON ap.id = r.visit_id
                   WHERE p.template_id = %s""",
        [template.pk],
    )
    cur.execute("DELETE FROM passes_redemption WHERE id IN (SELECT r FROM bench_old)")
    cur.execute("DELETE FROM scheduling_visit WHERE id IN (SELECT v FROM bench_old)")
    cur.execute("DELETE FROM scheduling_appointment WHERE id IN (SELECT a FROM bench_old)")
    cur.execute("DELETE FROM billing_invoice WHERE id IN (SELECT i FROM bench_old)")
    cur.execute("DROP TABLE bench_old")
    cur.execute(
        "UPDATE passes_pass SET posted_count = 0, recognised_minor = 0 WHERE template_id = %s",
        [template.pk],
    )


def build(b, size: int, rebuild: bool) -> dict:
    """The data set: returns its template and how long generation took (0 when reused)."""
    from django.db import connection, transaction

    from carnet.billing.models import Invoice
    from carnet.core import clock
    from carnet.passes.models import EligibleItem, Pass, PassTemplate, Redemption
    from carnet.passes.packages.selling import package_sell
    from carnet.scheduling.models import Appointment, Visit

    name = _template_name(size)
    template = PassTemplate.objects.filter(name=name).first()
    if template is not None and not rebuild:
        have = Redemption.objects.filter(sold_pass__template=template, status="posted").count()
        every = Redemption.objects.filter(
            sold_pass__template__name__startswith=_template_name(0)[:-1]
        ).count()
        if have == size == every:
            return {"template": template, "generated_s": 0.0}
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        for other in PassTemplate.objects.filter(name__startswith=_template_name(0)[:-1]):
            _drop(cur, other)  # one data set at a time: the report reads the whole clinic
        if template is None:
            now = clock.now()
            template = PassTemplate.objects.create(
                name=name,
                price_minor=100 * size,
                quantity=size,
                income_category=b["category"],
                created_at=now,
                updated_at=now,
            )
            EligibleItem.objects.create(
                template=template, treatment=b["treatment"], additional_charge_minor=0
            )
            people = patients("BenchReport", PATIENTS)
            first = package_sell(
                actor=b["owner"].user, patient=people[0], template=template, expires_on=None
            )
            _copy_pass(cur, first.pk, [p.pk for p in people[1:]])
        lanes = list(
            Pass.objects.filter(template=template)
            .order_by("pk")
            .values_list("pk", "patient_id", "items__pk")
        )
        pracs = [p.pk for p in b["practitioners"]]
        cur.execute(
            """CREATE TEMP TABLE bench_lane ON COMMIT DROP AS
                       SELECT (n - 1)::int AS n, pass_id, patient_id, item_id
                       FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) WITH ORDINALITY
                            AS t(pass_id, patient_id, item_id, n)""",
            [[lane[0] for lane in lanes], [lane[1] for lane in lanes], [lane[2] for lane in lanes]],
        )
        a0 = _reserve(cur, "scheduling_appointment", size)
        v0 = _reserve(cur, "scheduling_visit", size)
        i0 = _reserve(cur, "billing_invoice", size)
        r0 = _reserve(cur, "passes_redemption", size)
        cur.execute("SELECT next_number FROM billing_invoicecounter WHERE id = 1 FOR UPDATE")
        number0 = cur.fetchone()[0]
        cur.execute(
            "UPDATE billing_invoicecounter SET next_number = next_number + %s WHERE id = 1", [size]
        )
        start = dt.datetime.combine(FIRST_DAY, dt.time(14, 0), tzinfo=dt.timezone.utc)
        series = "FROM generate_series(0, %s - 1) g"
        # Chronological, as a clinic writes them: visit g falls on day g × DAYS ÷
        # size, at one of 8 hours.
        day = f"(g::bigint * {DAYS} / {size})::int"
        slot = f"%s + {day} * interval '1 day' + (g %% 8) * interval '1 hour'"
        cols, vals = _rest(
            Appointment,
            'id, start, "end", status, booked_by, notes, created_at, booked_by_staff_id, '
            "location_id, practitioner_id, treatment_id",
        )
        cur.execute(
            f"""INSERT INTO scheduling_appointment (id, start, "end", status, booked_by, notes,
                            created_at, booked_by_staff_id, location_id, practitioner_id,
                            treatment_id{cols})
                        SELECT %s + g, {slot}, {slot} + interval '1 hour', 'arrived', 'staff', '',
                               now(), %s, %s, (%s::bigint[])[1 + g %% {len(pracs)}], %s{vals}
                        {series}""",
            [a0, start, start, b["owner"].pk, b["location"].pk, pracs, b["treatment"].pk, size],
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
                        SELECT %s + g, %s + g, l.patient_id, %s,
                               (%s::bigint[])[1 + g %% {len(pracs)}],
                               (%s::date + {day}), now(), 0, 0, 0, 0, ''{vals}
                        {series} JOIN bench_lane l ON l.n = g %% {len(lanes)}""",
            [i0, number0, b["location"].pk, pracs, FIRST_DAY, size],
        )
        cols, vals = _rest(
            Visit, "id, role, status, booked_at, appointment_id, invoice_id, patient_id"
        )
        cur.execute(
            f"""INSERT INTO scheduling_visit (id, role, status, booked_at,
                            appointment_id, invoice_id, patient_id{cols})
                        SELECT %s + g, 'primary', 'arrived', now(), %s + g, %s + g,
                               l.patient_id{vals}
                        {series} JOIN bench_lane l ON l.n = g %% {len(lanes)}""",
            [v0, a0, i0, size],
        )
        cols, vals = _rest(
            Redemption,
            "id, sold_pass_id, item_id, visit_id, patient_id, status, visit_date, reserved_at, "
            "posted_at, value_minor, additional_charge_minor, practitioner_id, "
            "compensation_minor, compensated_upfront, by_no_show",
        )
        cur.execute(
            f"""INSERT INTO passes_redemption (id, sold_pass_id, item_id, visit_id, patient_id,
                            status, visit_date, reserved_at, posted_at, value_minor,
                            additional_charge_minor, practitioner_id, compensation_minor,
                            compensated_upfront, by_no_show{cols})
                        SELECT %s + g, l.pass_id, l.item_id, %s + g, l.patient_id, 'posted',
                               (%s::date + {day}), now(), now(), 100, 0,
                               (%s::bigint[])[1 + g %% {len(pracs)}], 0, false, false{vals}
                        {series} JOIN bench_lane l ON l.n = g %% {len(lanes)}""",
            [r0, v0, FIRST_DAY, pracs, size],
        )
        cur.execute(
            """UPDATE passes_pass p SET posted_count = c.n, recognised_minor = 100 * c.n
                       FROM (SELECT sold_pass_id, count(*) AS n FROM passes_redemption r
                             JOIN passes_pass q ON q.id = r.sold_pass_id WHERE q.template_id = %s
                             GROUP BY sold_pass_id) c WHERE p.id = c.sold_pass_id""",
            [template.pk],
        )
    with connection.cursor() as cur:
        for table in (
            "scheduling_appointment",
            "scheduling_visit",
            "billing_invoice",
            "passes_redemption",
            "passes_pass",
        ):
            cur.execute(f"ANALYZE {table}")
    return {"template": template, "generated_s": round(time.perf_counter() - t0, 1)}


RAW = """
SELECT r.visit_date, p.kind, p.name, pt.first_name, pt.last_name, t.name, t.price_minor,
       s.display_name, i.number, r.value_minor
FROM passes_redemption r
JOIN passes_pass p ON p.id = r.sold_pass_id
JOIN people_patient pt ON pt.id = r.patient_id
JOIN passes_passitem it ON it.id = r.item_id
JOIN clinic_treatment t ON t.id = it.treatment_id
LEFT JOIN people_staffmember s ON s.id = r.practitioner_id
JOIN scheduling_visit v ON v.id = r.visit_id
LEFT JOIN billing_invoice i ON i.id = v.invoice_id
WHERE r.status = 'posted' AND r.visit_date BETWEEN %s AND %s
ORDER BY r.visit_date, r.id
"""


def _selector():
    """pass_usage_report (carnet/reports/pass_reports.py, committed with issue 8)."""
    from carnet.reports.pass_reports import pass_usage_report

    return pass_usage_report


def _median_time(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(args) -> dict:
    import psycopg

    b = base()
    size = args.redemptions or (50_000 if args.quick else 1_000_000)
    built = build(b, size, args.rebuild)
    start, end = MONTH
    selector, owner = _selector(), b["owner"].user
    app_fn = lambda: selector(actor=owner, start=start, end=end).rows  # noqa: E731
    timed = "carnet.reports.pass_reports.pass_usage_report"
    with psycopg.connect(dsn()) as conn:

        def raw_fn():
            return conn.execute(RAW, [start, end]).fetchall()

        raw_fn()
        app_fn()  # warm both (plans, caches)
        repeat = 3 if args.quick else 5
        raw_s, raw_rows = _median_time(raw_fn, repeat)
        app_s, app_rows = _median_time(app_fn, repeat)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + RAW, [start, end]).fetchall())
    ratio = round(app_s / raw_s, 2) if raw_s else None
    ok = len(app_rows) == len(raw_rows) and app_s < 1.0 and ratio is not None and ratio <= 2.0
    result = {
        "benchmark": "pass_usage_report",
        "timed": timed,
        "redemptions": size,
        "generated_s": built["generated_s"],
        "month": [str(start), str(end)],
        "rows": len(app_rows),
        "raw_rows": len(raw_rows),
        "app_s": round(app_s, 3),
        "raw_sql_s": round(raw_s, 3),
        "ratio_app_to_raw": ratio,
        "uses_status_visit_date_index": "redemption_status_visit_idx" in plan,
        "target": "< 1 s and <= 2x raw SQL",
        "pass": ok,
        "machine": machine(),
    }
    emit(
        result,
        f"pass-usage report: {len(app_rows)} rows of {size:,} in {app_s * 1000:.0f} ms vs raw SQL "
        f"{raw_s * 1000:.0f} ms (×{ratio}) — {'PASS' if ok else 'MISS'} (target <1 s, ≤2×)",
    )
    return result
