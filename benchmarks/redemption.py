"""Benchmark 1: redemption throughput and latency through the HTTP API vs a raw-SQL baseline.

One redemption = attach a package session to a booked visit (POST /appointments/{id}/patients/{pid}/pass
with the pass id) and arrive it (POST /appointments/{id}/arrive), against gunicorn with DEBUG off.
The raw-SQL baseline does the same writes with psycopg in one transaction: the conditional UPDATE of the
pass counters (and the item's), the reserved redemption, the next invoice number, the invoice, its line
and line tax, the posted use (pass counters, redemption), the ledger transaction and its two postings,
the visit and appointment statuses and the three activity-log rows the services write.

Visits are pre-booked with SQL (not timed); each client works through its own lane of patients, each
with a paid package, so API and baseline see the same row contention.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

from common import ROOT, base, dsn, emit, latency, machine, patients

LANES = 32
PACK = "Bench redeem pack 100k"


def _passes(b) -> list:
    """LANES patients, each with one paid package of 100,000 sessions (1.00 each) (made once)."""
    from carnet.billing.payments import payment_receive
    from carnet.core import clock
    from carnet.passes.models import EligibleItem, Pass, PassTemplate
    from carnet.passes.selectors import pass_invoices
    from carnet.passes.selling import package_sell

    owner = b["owner"].user
    template = PassTemplate.objects.filter(name=PACK).first()
    if template is None:
        now = clock.now()
        template = PassTemplate.objects.create(name=PACK, price_minor=10_000_000, quantity=100_000,
                                               income_category=b["category"], created_at=now, updated_at=now)
        EligibleItem.objects.create(template=template, treatment=b["treatment"], additional_charge_minor=0)
    out = []
    for patient in patients("BenchRedeem", LANES):
        sold = Pass.objects.filter(patient=patient, template=template, status="active").first()
        if sold is None:
            sold = package_sell(actor=owner, patient=patient, template=template, expires_on=None)
            for invoice in pass_invoices(sold):
                invoice.refresh_from_db()
                payment_receive(actor=owner, patient=patient, method="cash", amount_minor=invoice.balance_minor,
                                allocations=[(invoice, invoice.balance_minor)])
        out.append(sold)
    return out


def _prebook(b, sold: list, count: int, *, day_offset: int) -> list[tuple[int, int, int, int]]:
    """`count` booked individual visits with no pass, round-robin over the lanes: [(appointment, patient,
    pass, visit row)]. Visits go on one day (double-booking is on in the bench clinic)."""
    from django.db import connection

    start = dt.datetime.now(dt.timezone.utc).replace(hour=14, minute=0, second=0, microsecond=0) \
        + dt.timedelta(days=day_offset)
    lanes = [(s.patient_id, s.pk) for s in sold]
    with connection.cursor() as cur:
        cur.execute(
            """INSERT INTO scheduling_appointment (start, "end", status, booked_by, notes, created_at,
                   booked_by_staff_id, location_id, practitioner_id, treatment_id)
               SELECT %s + (g %% 480) * interval '1 minute', %s + (g %% 480) * interval '1 minute' + interval '60 minutes',
                      'booked', 'staff', '', now(), %s, %s, %s, %s
               FROM generate_series(1, %s) g RETURNING id""",
            [start, start, b["owner"].pk, b["location"].pk, b["owner"].pk, b["treatment"].pk, count])
        ids = sorted(r[0] for r in cur.fetchall())
        rows = []
        for n, pk in enumerate(ids):
            patient, pass_id = lanes[n % len(lanes)]
            rows.append((pk, patient, pass_id))
        cur.execute(
            """INSERT INTO scheduling_appointmentpatient (role, status, booked_at, appointment_id, patient_id)
               SELECT 'primary', 'booked', now(), a, p FROM unnest(%s::bigint[], %s::bigint[]) AS t(a, p)
               RETURNING id, appointment_id""",
            [[r[0] for r in rows], [r[1] for r in rows]])
        visit = dict((a, v) for v, a in cur.fetchall())
    return [(a, p, s, visit[a]) for a, p, s in rows]


# ---------------------------------------------------------------- the workers


def _run(clients: int, work: list, one) -> dict:
    """Split `work` into `clients` threads (each its own lanes); time each call of `one(state, item)`."""
    per = [work[n::clients] for n in range(clients)]
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def worker(n):
        state = {}
        try:
            barrier.wait()
            for item in per[n]:
                t0 = time.perf_counter()
                one(state, item)
                samples[n].append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - reported in the results
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            closer = state.get("close")
            if closer:
                closer()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [s for per_client in samples for s in per_client]
    return {"clients": clients, "ops": len(flat), "seconds": round(elapsed, 3),
            "ops_per_s": round(len(flat) / elapsed, 1) if elapsed else None, **latency(flat),
            "errors": len(errors), "first_error": errors[0] if errors else None}


def _api_call(base_url: str, token: str, idempotency: bool):
    target = urlparse(base_url)

    def request(state, method, path, body):
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            state["close"] = conn.close
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if idempotency:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} → {response.status}: {data[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            state.pop("conn")

    def one(state, item):
        appointment, patient, pass_id, _visit = item
        request(state, "POST", f"/api/v1/appointments/{appointment}/patients/{patient}/pass", {"pass_id": pass_id})
        request(state, "POST", f"/api/v1/appointments/{appointment}/arrive", None)

    return one


class _Raw:
    """The same writes as attach + arrive, with psycopg, one transaction per redemption."""

    def __init__(self, b):
        import psycopg

        from carnet.ledger import accounts
        from carnet.ledger.services import _accounts

        # A fresh database has no revenue account until a first arrival posts to it.
        _accounts({accounts.DEFERRED_PACKAGES, accounts.revenue(b["category"].pk)})
        self.psycopg = psycopg
        with psycopg.connect(dsn()) as conn:
            self.deferred = conn.execute("SELECT id FROM ledger_account WHERE code = 'deferred_revenue_packages'"
                                         ).fetchone()[0]
            self.revenue = conn.execute("SELECT id FROM ledger_account WHERE code = %s",
                                        [f"revenue:{b['category'].pk}"]).fetchone()[0]
            self.items = dict(conn.execute("SELECT sold_pass_id, id FROM passes_passitem").fetchall())
            self.tax = conn.execute("SELECT tax_id FROM clinic_treatment_taxes WHERE treatment_id = %s",
                                    [b["treatment"].pk]).fetchone()[0]
        self.b = b
        self.owner_user = b["owner"].user_id

    def one(self, state, item):
        appointment, patient, pass_id, visit = item
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = self.psycopg.connect(dsn())
            state["close"] = conn.close
        b = self.b
        with conn.transaction():
            cur = conn.cursor()
            cur.execute("""SELECT a.start, ap.status FROM scheduling_appointment a
                           JOIN scheduling_appointmentpatient ap ON ap.appointment_id = a.id
                           WHERE a.id = %s FOR UPDATE OF a""", [appointment])
            start, _status = cur.fetchone()
            cur.execute("""UPDATE passes_pass SET reserved_count = reserved_count + 1
                           WHERE id = %s AND status = 'active'
                             AND reserved_count + posted_count + forfeited_count < quantity
                             AND reserved_count + posted_count < quantity
                           RETURNING price_minor, quantity""", [pass_id])
            price, quantity = cur.fetchone()
            value = price // quantity
            item_id = self.items[pass_id]
            cur.execute("""UPDATE passes_passitem SET used_count = used_count + 1
                           WHERE id = %s AND ("limit" IS NULL OR used_count < "limit")""", [item_id])
            cur.execute("""INSERT INTO passes_redemption (sold_pass_id, item_id, visit_id, patient_id, status,
                               visit_date, reserved_at, value_minor, additional_charge_minor, practitioner_id,
                               compensation_minor, compensated_upfront, by_no_show, breakage_minor)
                           VALUES (%s, %s, %s, %s, 'reserved', %s, now(), %s, 0, %s, 0, false, false, 0) RETURNING id""",
                        [pass_id, item_id, visit, patient, start.date(), value, b["owner"].pk])
            redemption = cur.fetchone()[0]
            self._log(cur, "pass attached", "passes.redemption", redemption)
            cur.execute("UPDATE billing_invoicecounter SET next_number = next_number + 1 WHERE id = 1 "
                        "RETURNING next_number - 1")
            number = cur.fetchone()[0]
            cur.execute("""INSERT INTO billing_invoice (number, patient_id, location_id, staff_id, invoice_date,
                               created_at, subtotal_minor, tax_minor, total_minor, applied_minor, notes)
                           VALUES (%s, %s, %s, %s, %s, now(), 0, 0, 0, 0, '') RETURNING id""",
                        [number, patient, b["location"].pk, b["owner"].pk, start.date()])
            invoice = cur.fetchone()[0]
            cur.execute("""INSERT INTO billing_invoiceline (invoice_id, kind, description, quantity, unit_price_minor,
                               adjustment_minor, tax_inclusive, income_category_id, staff_id, treatment_id,
                               net_minor, tax_minor, total_minor)
                           VALUES (%s, 'treatment', %s, 1, 0, 0, false, %s, %s, %s, 0, 0, 0) RETURNING id""",
                        [invoice, f"{b['treatment'].name} — covered by {PACK}", b["category"].pk, b["owner"].pk,
                         b["treatment"].pk])
            line = cur.fetchone()[0]
            cur.execute("INSERT INTO billing_invoicelinetax (line_id, tax_id, rate, amount_minor) "
                        "VALUES (%s, %s, 13.000, 0)", [line, self.tax])
            self._log(cur, "created", "billing.invoice", invoice)
            cur.execute("""UPDATE passes_pass SET reserved_count = reserved_count - 1, posted_count = posted_count + 1,
                               recognised_minor = recognised_minor + %s WHERE id = %s""", [value, pass_id])
            cur.execute("UPDATE passes_redemption SET status = 'posted', posted_at = now() WHERE id = %s",
                        [redemption])
            cur.execute("""INSERT INTO ledger_journaltransaction (at, kind, source_type, source_id, memo)
                           VALUES (now(), 'pass_redeemed', 'passes.redemption', %s, %s) RETURNING id""",
                        [str(redemption), f"{PACK}: one use"])
            txn = cur.fetchone()[0]
            cur.execute("INSERT INTO ledger_posting (transaction_id, account_id, patient_id, amount) "
                        "VALUES (%s, %s, NULL, %s), (%s, %s, NULL, %s)",
                        [txn, self.deferred, value, txn, self.revenue, -value])
            cur.execute("UPDATE scheduling_appointmentpatient SET status = 'arrived', invoice_id = %s WHERE id = %s",
                        [invoice, visit])
            cur.execute("UPDATE scheduling_appointment SET status = 'arrived' WHERE id = %s", [appointment])
            self._log(cur, "arrived", "scheduling.appointment", appointment)

    def _log(self, cur, verb, kind, pk):
        cur.execute("""INSERT INTO core_activitylog (at, actor_id, actor_name, verb, object_type, object_id,
                           object_repr, after) VALUES (now(), %s, 'bench-owner', %s, %s, %s, '', '{}'::jsonb)""",
                    [self.owner_user, verb, kind, str(pk)])


# ---------------------------------------------------------------- the server


def _server(workers: int, threads: int, port: int, token: str):
    env = dict(os.environ, DEBUG="0", SECRET_KEY=os.environ.get("SECRET_KEY", "bench-" + uuid.uuid4().hex),
               ALLOWED_HOSTS="127.0.0.1,localhost", CONN_MAX_AGE=os.environ.get("CONN_MAX_AGE", "60"),
               LOG_LEVEL="ERROR")
    cmd = [str(ROOT / ".venv/bin/gunicorn"), "carnet.wsgi:application", "-b", f"127.0.0.1:{port}",
           "-w", str(workers), "--threads", str(threads), "-k", "gthread", "--keep-alive", "30",
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/patients?limit=1", headers={"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
            conn.close()
            return proc, " ".join(cmd[1:])
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("gunicorn did not start")


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def run(args) -> dict:
    from carnet.people.models import ApiToken
    from carnet.people.services import api_token_create

    b = base()
    sold = _passes(b)
    levels = [int(n) for n in args.clients.split(",")]
    ops = args.ops or (40 if args.quick else 400)
    owner = b["owner"].user
    ApiToken.objects.filter(staff=b["owner"], name="bench").delete()
    _token, raw_token = api_token_create(actor=owner, name="bench")
    port = args.port
    raw = _Raw(b)  # before the server starts: a failure here leaves no server behind
    proc, cmdline = _server(args.workers, args.threads, port, raw_token)
    rows = []
    try:
        api_one = _api_call(f"http://127.0.0.1:{port}", raw_token, args.idempotency)
        # Warm up: the workers' imports, connections and caches (not counted).
        _run(min(4, max(levels)), _prebook(b, sold, 8 * args.workers, day_offset=1), api_one)
        _run(2, _prebook(b, sold, 8, day_offset=1), raw.one)
        for clients in levels:
            n = max(ops, clients * 4)
            api = _run(clients, _prebook(b, sold, n, day_offset=1), api_one)
            base_sql = _run(clients, _prebook(b, sold, n, day_offset=1), raw.one)
            ratio = round(api["ops_per_s"] / base_sql["ops_per_s"], 3) if api["ops_per_s"] and base_sql["ops_per_s"] \
                else None
            rows.append({"clients": clients, "api": api, "raw_sql": base_sql, "ratio": ratio})
    finally:
        _stop(proc)
    at16 = next((r for r in rows if r["clients"] == max(levels)), rows[-1])
    result = {"benchmark": "redemption", "server": cmdline, "workers": args.workers, "threads": args.threads,
              "idempotency_key": args.idempotency, "ops_per_level": ops, "levels": rows,
              "target": "api >= 40% of raw SQL at 16 clients",
              "pass": bool(at16["ratio"] is not None and at16["ratio"] >= 0.4 and not at16["api"]["errors"]),
              "machine": machine()}
    parts = [f"{r['clients']}c api {r['api']['ops_per_s']}/s p50 {r['api']['p50_ms']}ms p99 {r['api']['p99_ms']}ms"
             f" vs sql {r['raw_sql']['ops_per_s']}/s (ratio {r['ratio']})" for r in rows]
    emit(result, "redemption: " + "; ".join(parts) + f" — {'PASS' if result['pass'] else 'MISS'} (target ≥0.40)")
    return result
