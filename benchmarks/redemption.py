"""Benchmark 1: redemption throughput and latency through the HTTP API vs a raw-SQL baseline.

One redemption = attach a package session to a booked visit (POST
/appointments/{id}/patients/{pid}/pass with the pass id) and arrive it (POST
/appointments/{id}/arrive), against gunicorn with DEBUG off. The raw-SQL baseline does the same
writes with psycopg in one transaction: the conditional UPDATE of the pass counters (and the
item's), the reserved redemption, the next invoice number, the invoice, its line and line tax, the
posted use (pass counters, redemption), the ledger transaction and its two postings,
the visit and appointment statuses and the three activity-log rows the services write.

The floor of Carnet's own stack (issue 25) runs in the same run at each concurrency: a minimal
django-ninja app (`floor.py`, no middleware, no ORM) whose two endpoints run the baseline's
statements through Django's connection, under the same gunicorn. Each variant's CPU per redemption
is read from /proc: the app server's process group and PostgreSQL's processes.

Visits are pre-booked with SQL (not timed); each client works through its own lane of patients, each
with a paid package, so API, floor and baseline see the same row contention.
"""

from __future__ import annotations

import contextlib
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

from common import ROOT, base, dsn, emit, latency, machine, patients, postgres_cpu, server_cpu

LANES = 32
PACK = "Bench redeem pack 100k"


def sold_passes(b) -> list:
    """LANES patients, each with one paid package of 100,000 sessions (1.00 each) (made once)."""
    from carnet.billing.payments import payment_receive
    from carnet.core import clock
    from carnet.passes.models import EligibleItem, Pass, PassTemplate
    from carnet.passes.packages.selling import package_sell
    from carnet.passes.selectors import pass_invoices

    owner = b["owner"].user
    template = PassTemplate.objects.filter(name=PACK).first()
    if template is None:
        now = clock.now()
        template = PassTemplate.objects.create(
            name=PACK,
            price_minor=10_000_000,
            quantity=100_000,
            income_category=b["category"],
            created_at=now,
            updated_at=now,
        )
        EligibleItem.objects.create(
            template=template, treatment=b["treatment"], additional_charge_minor=0
        )
    out = []
    for patient in patients("BenchRedeem", LANES):
        sold = Pass.objects.filter(patient=patient, template=template, status="active").first()
        if sold is None:
            sold = package_sell(actor=owner, patient=patient, template=template, expires_on=None)
            for invoice in pass_invoices(sold):
                invoice.refresh_from_db()
                payment_receive(
                    actor=owner,
                    patient=patient,
                    method="cash",
                    amount_minor=invoice.balance_minor,
                    allocations=[(invoice, invoice.balance_minor)],
                )
        out.append(sold)
    return out


def prebook(b, sold: list, count: int, *, day_offset: int) -> list[tuple[int, int, int, int]]:
    """`count` booked individual visits with no pass, round-robin over the lanes: [(appointment,
    patient, pass, visit)]. Visits go on one day (double-booking is on in the bench clinic)."""
    from django.db import connection

    start = dt.datetime.now(dt.timezone.utc).replace(
        hour=14, minute=0, second=0, microsecond=0
    ) + dt.timedelta(days=day_offset)
    lanes = [(s.patient_id, s.pk) for s in sold]
    with connection.cursor() as cur:
        cur.execute(
            """INSERT INTO scheduling_appointment (start, "end", status, booked_by, notes,
                   created_at, booked_by_staff_id, location_id, practitioner_id, treatment_id)
               SELECT %s + (g %% 480) * interval '1 minute',
                      %s + (g %% 480) * interval '1 minute' + interval '60 minutes',
                      'booked', 'staff', '', now(), %s, %s, %s, %s
               FROM generate_series(1, %s) g RETURNING id""",
            [
                start,
                start,
                b["owner"].pk,
                b["location"].pk,
                b["owner"].pk,
                b["treatment"].pk,
                count,
            ],
        )
        ids = sorted(r[0] for r in cur.fetchall())
        rows = []
        for n, pk in enumerate(ids):
            patient, pass_id = lanes[n % len(lanes)]
            rows.append((pk, patient, pass_id))
        cur.execute(
            """INSERT INTO scheduling_visit (role, status, booked_at, appointment_id,
                   patient_id)
               SELECT 'primary', 'booked', now(), a, p
               FROM unnest(%s::bigint[], %s::bigint[]) AS t(a, p)
               RETURNING id, appointment_id""",
            [[r[0] for r in rows], [r[1] for r in rows]],
        )
        visit = dict((a, v) for v, a in cur.fetchall())
    return [(a, p, s, visit[a]) for a, p, s in rows]


# ---------------------------------------------------------------- the workers


def _run(clients: int, work: list, one) -> dict:
    """Split `work` into `clients` threads (each its own lanes);
    time each call of `one(state, item)`."""
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
    return _summary(clients, flat, elapsed, errors)


def _summary(clients: int, flat: list[float], elapsed: float, errors: list[str]) -> dict:
    return {
        "clients": clients,
        "ops": len(flat),
        "seconds": round(elapsed, 3),
        "ops_per_s": round(len(flat) / elapsed, 1) if elapsed else None,
        **latency(flat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "_samples": flat,
        "_errors": errors,
        "_elapsed": elapsed,
    }


# Where the floors (`floor.py`) serve their two endpoints.
FLOOR, PLUMBED_FLOOR = "/floor", "/api/floor"


def requests(item: tuple, floor: str | None = None) -> list[tuple[str, dict | None]]:
    """The two POSTs (path, body) of one redemption: attach, then arrive, to Carnet's API or to
    the floor at `floor` (which is told the ids the API reads for itself)."""
    appointment, patient, pass_id, visit = item
    if floor is None:
        return [
            (f"/api/v1/appointments/{appointment}/patients/{patient}/pass", {"pass_id": pass_id}),
            (f"/api/v1/appointments/{appointment}/arrive", None),
        ]
    ids = {"pass_id": pass_id, "visit": visit}
    return [
        (f"{floor}/appointments/{appointment}/patients/{patient}/pass", ids),
        (f"{floor}/appointments/{appointment}/arrive", {**ids, "patient": patient}),
    ]


def _api_call(base_url: str, token: str, idempotency: bool, floor: str | None = None):
    """One attach + arrive over HTTP, to Carnet's API or to the floor at `floor`."""
    target = urlparse(base_url)

    def request(state, method, path, body):
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(
                target.hostname, target.port, timeout=60
            )
            state["close"] = conn.close
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if idempotency:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} → {response.status}: {data[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            state.pop("conn")

    def one(state, item):
        for path, body in requests(item, floor):
            request(state, "POST", path, body)

    return one


def statements_config(b, sold: list) -> dict:
    """The ids the hand-written statements need (read once, before any server starts)."""
    import psycopg

    from carnet.ledger import accounts
    from carnet.ledger.services import _accounts

    # A fresh database has no revenue account until a first arrival posts to it.
    _accounts({accounts.DEFERRED_PACKAGES, accounts.revenue(b["category"].pk)})
    with psycopg.connect(dsn()) as conn:
        deferred = conn.execute(
            "SELECT id FROM ledger_account WHERE code = 'deferred_revenue_packages'"
        ).fetchone()[0]
        revenue = conn.execute(
            "SELECT id FROM ledger_account WHERE code = %s", [f"revenue:{b['category'].pk}"]
        ).fetchone()[0]
        # Only the lanes' passes: the config travels in an environment variable (FLOOR_CONFIG),
        # and a database other benchmarks have filled holds too many items for one.
        items = dict(
            conn.execute(
                "SELECT sold_pass_id, id FROM passes_passitem WHERE sold_pass_id = ANY(%s)",
                [[p.pk for p in sold]],
            ).fetchall()
        )
        tax = conn.execute(
            "SELECT tax_id FROM clinic_treatment_taxes WHERE treatment_id = %s", [b["treatment"].pk]
        ).fetchone()[0]
    return {
        "deferred": deferred,
        "revenue": revenue,
        "items": {str(k): v for k, v in items.items()},
        "tax": tax,
        "location": b["location"].pk,
        "owner": b["owner"].pk,
        "owner_user": b["owner"].user_id,
        "category": b["category"].pk,
        "treatment": b["treatment"].pk,
        "line_description": f"{b['treatment'].name} — covered by {PACK}",
    }


class Statements:
    """The writes of attach and of arrive as hand-written SQL on any DB-API cursor (psycopg's for
    the raw-SQL baseline, Django's for the django-ninja floor in `floor.py`)."""

    def __init__(self, config: dict):
        self.c = config

    def attach(self, cur, appointment: int, patient: int, pass_id: int, visit: int) -> tuple:
        c = self.c
        cur.execute(
            """SELECT a.start, ap.status FROM scheduling_appointment a
                       JOIN scheduling_visit ap ON ap.appointment_id = a.id
                       WHERE a.id = %s FOR UPDATE OF a""",
            [appointment],
        )
        start, _status = cur.fetchone()
        cur.execute(
            """UPDATE passes_pass SET reserved_count = reserved_count + 1
                       WHERE id = %s AND status = 'active'
                         AND reserved_count + posted_count + forfeited_count < quantity
                         AND reserved_count + posted_count < quantity
                       RETURNING price_minor, quantity""",
            [pass_id],
        )
        price, quantity = cur.fetchone()
        value = price // quantity
        item_id = c["items"][str(pass_id)]
        cur.execute(
            """UPDATE passes_passitem SET used_count = used_count + 1
                       WHERE id = %s AND ("limit" IS NULL OR used_count < "limit")""",
            [item_id],
        )
        cur.execute(
            """INSERT INTO passes_redemption (sold_pass_id, item_id, visit_id, patient_id, status,
                           visit_date, reserved_at, value_minor, additional_charge_minor,
                           practitioner_id, compensation_minor, compensated_upfront, by_no_show,
                           breakage_minor)
                       VALUES (%s, %s, %s, %s, 'reserved', %s, now(), %s, 0, %s, 0, false, false, 0)
                       RETURNING id""",
            [pass_id, item_id, visit, patient, start.date(), value, c["owner"]],
        )
        redemption = cur.fetchone()[0]
        self._log(cur, "pass attached", "passes.redemption", redemption)
        return start, redemption, value

    def arrive(
        self,
        cur,
        appointment: int,
        patient: int,
        pass_id: int,
        visit: int,
        attached: tuple | None = None,
    ):
        """`attached` is what `attach` returned in the same transaction (the baseline); without it
        (a second request) the appointment is locked again and the reserved use read back."""
        c = self.c
        if attached is None:
            cur.execute(
                "SELECT start FROM scheduling_appointment WHERE id = %s FOR UPDATE", [appointment]
            )
            start = cur.fetchone()[0]
            cur.execute(
                "SELECT id, value_minor FROM passes_redemption "
                "WHERE visit_id = %s AND status = 'reserved'",
                [visit],
            )
            redemption, value = cur.fetchone()
        else:
            start, redemption, value = attached
        cur.execute(
            "UPDATE billing_invoicecounter SET next_number = next_number + 1 WHERE id = 1 "
            "RETURNING next_number - 1"
        )
        number = cur.fetchone()[0]
        cur.execute(
            """INSERT INTO billing_invoice (number, patient_id, location_id, staff_id, invoice_date,
                           created_at, subtotal_minor, tax_minor, total_minor, applied_minor, notes)
                       VALUES (%s, %s, %s, %s, %s, now(), 0, 0, 0, 0, '') RETURNING id""",
            [number, patient, c["location"], c["owner"], start.date()],
        )
        invoice = cur.fetchone()[0]
        cur.execute(
            """INSERT INTO billing_invoiceline (invoice_id, kind, description, quantity,
                           unit_price_minor, adjustment_minor, tax_inclusive, income_category_id,
                           staff_id, treatment_id, net_minor, tax_minor, total_minor)
                       VALUES (%s, 'treatment', %s, 1, 0, 0, false, %s, %s, %s, 0, 0, 0)
                       RETURNING id""",
            [invoice, c["line_description"], c["category"], c["owner"], c["treatment"]],
        )
        line = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO billing_invoicelinetax (line_id, tax_id, rate, amount_minor) "
            "VALUES (%s, %s, 13.000, 0)",
            [line, c["tax"]],
        )
        self._log(cur, "created", "billing.invoice", invoice)
        cur.execute(
            """UPDATE passes_pass SET reserved_count = reserved_count - 1,
                           posted_count = posted_count + 1, recognised_minor = recognised_minor + %s
                               WHERE id = %s""",
            [value, pass_id],
        )
        cur.execute(
            "UPDATE passes_redemption SET status = 'posted', posted_at = now() WHERE id = %s",
            [redemption],
        )
        cur.execute(
            """INSERT INTO ledger_journaltransaction (at, kind, source_type, source_id, memo)
                       VALUES (now(), 'pass_redeemed', 'passes.redemption', %s, %s) RETURNING id""",
            [str(redemption), f"{PACK}: one use"],
        )
        txn = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO ledger_posting (transaction_id, account_id, patient_id, amount) "
            "VALUES (%s, %s, NULL, %s), (%s, %s, NULL, %s)",
            [txn, c["deferred"], value, txn, c["revenue"], -value],
        )
        cur.execute(
            "UPDATE scheduling_visit SET status = 'arrived', invoice_id = %s WHERE id = %s",
            [invoice, visit],
        )
        cur.execute(
            "UPDATE scheduling_appointment SET status = 'arrived' WHERE id = %s", [appointment]
        )
        self._log(cur, "arrived", "scheduling.appointment", appointment)

    def _log(self, cur, verb, kind, pk):
        cur.execute(
            """INSERT INTO core_activitylog (at, actor_id, actor_name, verb, object_type, object_id,
                           object_repr, after)
                       VALUES (now(), %s, 'bench-owner', %s, %s, %s, '', '{}'::jsonb)""",
            [self.c["owner_user"], verb, kind, str(pk)],
        )


class _Raw:
    """The same writes as attach + arrive, with psycopg, one transaction per redemption. Its
    connections are kept from one run to the next, as the servers keep theirs (CONN_MAX_AGE): a
    client taking a new one each run paid PostgreSQL's connection start-up inside the timed part
    (a sixth of a `--quick` run at 16 clients)."""

    def __init__(self, config: dict):
        import psycopg

        self.psycopg = psycopg
        self.sql = Statements(config)
        self.idle: list = []
        self.lock = threading.Lock()

    def one(self, state, item):
        conn = state.get("conn")
        if conn is None:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            conn = state["conn"] = conn or self.psycopg.connect(dsn())
            state["close"] = lambda: self._keep(conn)
        with conn.transaction():
            cur = conn.cursor()
            self.sql.arrive(cur, *item, attached=self.sql.attach(cur, *item))

    def _keep(self, conn) -> None:
        with self.lock:
            self.idle.append(conn)

    def close(self) -> None:
        with self.lock:
            for conn in self.idle:
                conn.close()
            self.idle.clear()


# ---------------------------------------------------------------- the server


def _server(
    workers: int,
    threads: int,
    port: int,
    token: str,
    *,
    worker_class: str = "gthread",
    floor_config: dict | None = None,
    plumbed: bool = False,
):
    """Carnet's API under gunicorn; with `floor_config`, the django-ninja floor (`floor.py`)
    instead, or with `plumbed` too the plumbed floor."""
    env = dict(
        os.environ,
        DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-" + uuid.uuid4().hex),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CONN_MAX_AGE=os.environ.get("CONN_MAX_AGE", "60"),
        LOG_LEVEL="ERROR",
    )
    app, probe = "carnet.wsgi:application", "/api/v1/patients?limit=1"
    if floor_config is not None:
        env.update(FLOOR_CONFIG=json.dumps(floor_config), DJANGO_SETTINGS_MODULE="floor_settings")
        app, probe = "floor:application", f"{FLOOR}/ready"
        if plumbed:
            env.update(FLOOR_PLUMBED="1")
            probe = f"{PLUMBED_FLOOR}/ready"
    cmd = [
        str(ROOT / ".venv/bin/gunicorn"),
        app,
        "--pythonpath",
        str(ROOT / "benchmarks"),
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-k",
        worker_class,
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", probe, headers={"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
            conn.close()
            return proc, " ".join(cmd[1:2] + cmd[4:])
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("gunicorn did not start")


def _measured(clients: int, work: list, one, server: int | None) -> dict:
    """`_run` plus the CPU seconds of the app server (if any) and of PostgreSQL."""
    app0, pg0 = (server_cpu(server) if server else None), postgres_cpu()
    out = _run(clients, work, one)
    out["_pg_cpu"] = postgres_cpu() - pg0
    if server:
        out["_app_cpu"] = server_cpu(server) - app0
    return out


def _mirrored(clients: int, n: int, variants: dict, book) -> dict:
    """Each variant's `n` redemptions twice, in mirrored order (A B C, then C B A), so that a
    machine getting faster or slower during the level weighs on every variant alike: their ratios
    are those of one moment (this machine's speed drifted by a third within minutes). `variants`:
    name -> (one, server pid or None); `book(k)` pre-books k visits. Each variant's result sums its
    two runs (2n redemptions); CPU is per redemption."""
    halves = {name: [] for name in variants}
    order = list(variants)
    for names in (order, order[::-1]):
        for name in names:
            one, server = variants[name]
            halves[name].append(_measured(clients, book(n), one, server))
    out = {}
    for name, parts in halves.items():
        merged = _summary(
            clients,
            [x for p in parts for x in p["_samples"]],
            sum(p["_elapsed"] for p in parts),
            [e for p in parts for e in p["_errors"]],
        )
        ops = merged["ops"] or 1
        merged["pg_cpu_ms"] = round(sum(p["_pg_cpu"] for p in parts) * 1000 / ops, 2)
        if variants[name][1]:
            merged["app_cpu_ms"] = round(sum(p["_app_cpu"] for p in parts) * 1000 / ops, 2)
        out[name] = {k: v for k, v in merged.items() if not k.startswith("_")}
    return out


def _ratio(a: dict, b: dict) -> float | None:
    return round(a["ops_per_s"] / b["ops_per_s"], 3) if a["ops_per_s"] and b["ops_per_s"] else None


def _cpu_ratio(a: dict, b: dict) -> float | None:
    return round(a["app_cpu_ms"] / b["app_cpu_ms"], 2) if b.get("app_cpu_ms") else None


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
    from carnet.ledger.services import balance_checkpoints_advance
    from carnet.people.models import ApiToken
    from carnet.people.services import api_token_create

    b = base()
    sold = sold_passes(b)

    def book(k: int) -> list:
        # Each run starts where the daily job (passes.jobs) leaves the ledger's balance
        # checkpoints: the liability guard then sums the run's own postings, as a clinic's sums
        # a day's, not those the raw-SQL and floor variants (and earlier runs) wrote to the
        # same account, which a clinic never has.
        balance_checkpoints_advance()
        return prebook(b, sold, k, day_offset=1)

    levels = [int(n) for n in args.clients.split(",")]
    ops = args.ops or (40 if args.quick else 400)
    owner = b["owner"].user
    ApiToken.objects.filter(staff=b["owner"], name="bench").delete()
    _token, raw_token = api_token_create(actor=owner, name="bench")
    port = args.port
    config = statements_config(b, sold)
    raw = _Raw(config)  # before the servers start: a failure here leaves no server behind
    rows = []
    with contextlib.ExitStack() as servers:  # each server stopped, then raw closed, whatever fails
        servers.callback(raw.close)

        def serve(offset: int, **kwargs) -> tuple:
            proc, cmdline = _server(
                args.workers,
                args.threads,
                port + offset,
                raw_token,
                worker_class=args.worker_class,
                **kwargs,
            )
            servers.callback(_stop, proc)
            return proc, cmdline

        proc, cmdline = serve(0)
        floor_proc, _ = serve(1, floor_config=config)
        api_one = _api_call(f"http://127.0.0.1:{port}", raw_token, args.idempotency)
        floor_one = _api_call(f"http://127.0.0.1:{port + 1}", raw_token, False, FLOOR)
        variants = {
            "api": (api_one, proc.pid),
            "floor": (floor_one, floor_proc.pid),
            "raw": (raw.one, None),
        }
        if args.plumbed:
            plumbed_proc, _ = serve(2, floor_config=config, plumbed=True)
            plumbed_one = _api_call(
                f"http://127.0.0.1:{port + 2}", raw_token, args.idempotency, PLUMBED_FLOOR
            )
            variants["plumbed"] = (plumbed_one, plumbed_proc.pid)
        # Warm up: the workers' imports, connections and caches (not counted). One client per
        # thread of every worker, six redemptions each: each kept connection stays with the
        # worker that took it, so fewer clients could leave a worker cold for the first level
        # (its compiled statements and prepared statements made while measured).
        warm = args.workers * max(args.threads, 1)
        for one_, server in variants.values():
            if server:
                _run(warm, prebook(b, sold, 6 * warm, day_offset=1), one_)
        most = max(levels)  # every connection the raw-SQL clients will use, opened now
        _run(most, prebook(b, sold, 2 * most, day_offset=1), raw.one)
        for clients in levels:
            n = max(ops, clients * 4)
            measured = _mirrored(clients, n, variants, book)
            api, floor, base_sql = measured["api"], measured["floor"], measured["raw"]
            row = {
                "clients": clients,
                "api": api,
                "ninja_floor": floor,
                "raw_sql": base_sql,
                "ratio": _ratio(api, base_sql),
                "ratio_floor": _ratio(api, floor),
                "floor_ratio": _ratio(floor, base_sql),
                "app_cpu_vs_floor": _cpu_ratio(api, floor),
            }
            if "plumbed" in measured:
                plumbed = measured["plumbed"]
                row.update(
                    plumbed_floor=plumbed,
                    plumbed_cpu_vs_floor=_cpu_ratio(plumbed, floor),
                    app_cpu_vs_plumbed=_cpu_ratio(api, plumbed),
                )
            rows.append(row)
    top = next((r for r in rows if r["clients"] == max(levels)), rows[-1])
    one = next((r for r in rows if r["clients"] == 1), None)
    checks = {
        "ratio_at_top": top["ratio"] is not None
        and top["ratio"] >= 0.4
        and not top["api"]["errors"],
        "app_cpu_at_top": top["app_cpu_vs_floor"] is not None and top["app_cpu_vs_floor"] <= 1.5,
        "p50_one_client": one is None or (one["api"]["p50_ms"] or 1e9) <= 20,
    }
    result = {
        "benchmark": "redemption",
        "server": cmdline,
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": args.worker_class,
        "idempotency_key": args.idempotency,
        "plumbed_floor": args.plumbed,
        "ops_per_level": ops,
        "levels": rows,
        "target": (
            f"at {top['clients']} clients api >= 40% of raw SQL and app CPU <= 1.5x the ninja "
            "floor's; p50 at 1 client <= 20 ms"
        ),
        "checks": checks,
        "pass": all(checks.values()),
        "machine": machine(),
    }
    parts = [
        (
            f"{r['clients']}c api {r['api']['ops_per_s']}/s p50 {r['api']['p50_ms']}ms p99 "
            f"{r['api']['p99_ms']}ms (cpu app {r['api']['app_cpu_ms']} + pg "
            f"{r['api']['pg_cpu_ms']} ms) vs floor {r['ninja_floor']['ops_per_s']}/s (cpu app "
            f"{r['ninja_floor']['app_cpu_ms']} + pg {r['ninja_floor']['pg_cpu_ms']} ms) vs sql "
            f"{r['raw_sql']['ops_per_s']}/s (pg {r['raw_sql']['pg_cpu_ms']} ms): "
            f"api/sql {r['ratio']}, api/floor {r['ratio_floor']}, "
            f"app cpu {r['app_cpu_vs_floor']}x floor"
            + (
                f", plumbed floor {r['plumbed_floor']['ops_per_s']}/s (cpu app "
                f"{r['plumbed_floor']['app_cpu_ms']} ms, {r['plumbed_cpu_vs_floor']}x floor; "
                f"api {r['app_cpu_vs_plumbed']}x plumbed)"
                if "plumbed_floor" in r
                else ""
            )
        )
        for r in rows
    ]
    emit(
        result,
        "redemption: " + "; ".join(parts) + f" — {'PASS' if result['pass'] else 'MISS'} "
        "(targets: api/sql ≥ 0.40, app cpu ≤ 1.5× floor, p50 at 1 client ≤ 20 ms)",
    )
    return result
