"""The redemption in one process: CPU per attach + arrive, of Python and of its PostgreSQL backend.

    DATABASE_URL=postgres://… DEBUG=0 .venv/bin/python benchmarks/redemption_profile.py
        [--pairs 150] [--rounds 3] [--profile [--top 40] [--sort tottime]]

Each pair is the benchmark's redemption (`redemption.py`: attach a package to a pre-booked visit,
then arrive it), sent with the same bearer token and a fresh Idempotency-Key per POST, but through
Django's WSGI handler in this process (the full middleware stack, no HTTP server, no threads). It
prints, per round, the Python CPU per pair (`time.process_time`), the CPU of this connection's own
PostgreSQL backend (`/proc/<pg_backend_pid()>/stat`, so other databases' load is not counted),
the statements of attach and of arrive, and the wall time. CPU times are disturbed far less than
wall times by other processes on the machine, so this is the tool to decide what pays; the
benchmark's own figures (`run.py redemption`) are the ones to report.

`--profile` runs one more round under cProfile and prints the top functions and the Python
function calls per pair (the profiler's overhead inflates that round's times, which are not
printed): calls do not vary with the machine's speed, as CPU times do. `--variant floor` or
`--variant plumbed` sends the same pairs to the benchmark's floors (`floor.py`) instead of the API,
so the three can be compared by Python calls. PostgreSQL only (the benchmark's data set-up), on the
same host (the backend's /proc).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# As the benchmark's gunicorn runs: a kept connection (prepared statements live as long as it
# does; an hour, so that a slow run on a loaded machine keeps one backend), quiet logging, a host
# the handler accepts with DEBUG off.
os.environ.setdefault("CONN_MAX_AGE", "3600")
os.environ.setdefault("LOG_LEVEL", "ERROR")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")

import redemption  # noqa: E402
from common import TICK, base, django_setup, machine  # noqa: E402

TOKEN_NAME = "profile"


def _backend_cpu(pid: int) -> float:
    """User + system CPU seconds of one PostgreSQL backend."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class _Wsgi:
    """POSTs straight into Django's WSGI application, as gunicorn would hand them over."""

    def __init__(self, token: str):
        from django.core.wsgi import get_wsgi_application

        self.app = get_wsgi_application()
        self.auth = f"Bearer {token}"

    def post(self, path: str, body: dict | None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": self.auth,
            "HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(data),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status = []
        chunks = self.app(environ, lambda s, headers, exc_info=None: status.append(s))
        try:
            out = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return int(status[0].split()[0]), out


class _Counter:
    """Counts the statements Django sends (an execute wrapper: no debug cursor, no SQL kept)."""

    def __init__(self):
        self.n = 0
        self.kept: list[str] | None = None  # --sql: the statements and their row counts

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        out = execute(sql, params, many, context)
        if self.kept is not None:
            self.kept.append(f"{context['cursor'].rowcount:>3} rows  {sql[:160]}")
        return out


# Where each variant's two endpoints are (None: Carnet's API).
PREFIXES = {"api": None, "floor": redemption.FLOOR, "plumbed": redemption.PLUMBED_FLOOR}


def _pairs(client: _Wsgi, work: list, counter: _Counter, variant: str = "api") -> tuple[int, int]:
    """Attach and arrive each item; the statements of attach and of arrive, summed."""
    sent = [0, 0]
    created = 201 if variant == "api" else 200  # the floors answer attach with a plain 200
    for item in work:
        for n, (path, body) in enumerate(redemption.requests(item, PREFIXES[variant])):
            before = counter.n
            status, answer = client.post(path, body)
            if status != (created if n == 0 else 200):
                sys.exit(f"{path} → {status}: {answer[:300]!r}")
            sent[n] += counter.n - before
    return sent[0], sent[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=150, help="attach + arrive pairs per round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=20, help="pairs before measuring")
    parser.add_argument("--profile", action="store_true", help="one more round under cProfile")
    parser.add_argument("--top", type=int, default=40, help="functions listed by --profile")
    parser.add_argument(
        "--sort", default="tottime", help="pstats sort key for --profile (tottime, cumulative)"
    )
    parser.add_argument(
        "--callers", help="with --profile: who calls the functions matching this pattern"
    )
    parser.add_argument(
        "--sql", action="store_true", help="print the statements of one pair with their row counts"
    )
    parser.add_argument(
        "--variant",
        choices=tuple(PREFIXES),
        default="api",
        help="Carnet's API (default), the django-ninja floor or the plumbed floor",
    )
    args = parser.parse_args(argv)

    if args.variant != "api":  # the floors' settings (floor_settings: the floor's URLconf)
        os.environ["DJANGO_SETTINGS_MODULE"] = "floor_settings"
        os.environ["FLOOR_PLUMBED"] = "1" if args.variant == "plumbed" else "0"
    django_setup()
    # Django's modules and the models after set-up (they need the configured settings).
    from django.db import connection

    from carnet.people.models import ApiToken
    from carnet.people.services import api_token_create

    b = base()
    sold = redemption.sold_passes(b)
    ApiToken.objects.filter(staff=b["owner"], name=TOKEN_NAME).delete()
    _token, raw = api_token_create(actor=b["owner"].user, name=TOKEN_NAME)
    if args.variant != "api":  # read by floor.py when the first request loads the URLconf
        os.environ["FLOOR_CONFIG"] = json.dumps(redemption.statements_config(b, sold))
    client = _Wsgi(raw)
    counter = _Counter()
    rounds = args.rounds + (1 if args.profile else 0)
    args.warmup += 1 if args.sql else 0  # --sql attaches one more booked visit
    # Booked before anything is timed (their day is tomorrow, as in the benchmark).
    work = [
        redemption.prebook(b, sold, n, day_offset=1) for n in [args.warmup] + [args.pairs] * rounds
    ]

    def backend() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    with connection.execute_wrapper(counter):
        _pairs(client, work[0][: len(work[0]) - args.sql], counter, args.variant)
        results = []
        for batch in work[1 : 1 + args.rounds]:
            pid = backend()
            py0, pg0, wall0 = time.process_time(), _backend_cpu(pid), time.perf_counter()
            attach, arrive = _pairs(client, batch, counter, args.variant)
            py1, pg1, wall1 = time.process_time(), _backend_cpu(pid), time.perf_counter()
            if backend() != pid:
                sys.exit("the connection was reopened mid-round: its backend's CPU is not all here")
            n = len(batch)
            results.append(
                {
                    "python_cpu_ms": round((py1 - py0) * 1000 / n, 2),
                    "pg_backend_cpu_ms": round((pg1 - pg0) * 1000 / n, 2),
                    "wall_ms": round((wall1 - wall0) * 1000 / n, 2),
                    "statements_attach": round(attach / n, 2),
                    "statements_arrive": round(arrive / n, 2),
                }
            )
        calls = None
        if args.profile:
            # CPU time, not wall: time spent waiting for PostgreSQL is not this process's cost.
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            _pairs(client, work[-1], counter, args.variant)
            profiler.disable()
            stats = pstats.Stats(profiler)
            calls = round(stats.total_calls / len(work[-1]))
        if args.sql:
            counter.kept = []
            _pairs(client, work[0][-1:], counter, args.variant)
    if args.sql:
        print("\n".join(counter.kept))
    for n, r in enumerate(results, 1):
        print(
            f"round {n}: python {r['python_cpu_ms']} ms, postgres backend "
            f"{r['pg_backend_cpu_ms']} ms, wall {r['wall_ms']} ms per pair; statements attach "
            f"{r['statements_attach']}, arrive {r['statements_arrive']}"
        )
    summary = {
        key: round(statistics.median(r[key] for r in results), 2)
        for key in ("python_cpu_ms", "pg_backend_cpu_ms", "wall_ms")
    }
    summary["statements"] = round(
        results[0]["statements_attach"] + results[0]["statements_arrive"], 2
    )
    if calls is not None:
        summary["python_calls_per_pair"] = calls
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats(args.sort)
        stats.print_stats(args.top)
        if args.callers:
            stats.print_callers(args.callers)
        print(out.getvalue())
    print(
        json.dumps(
            {
                "benchmark": "redemption_profile",
                "variant": args.variant,
                "pairs": args.pairs,
                "rounds": results,
                "median": summary,
                "machine": machine(),
            }
        )
    )
    print(
        f"redemption, {args.variant} (in-process, median of {len(results)} rounds of "
        f"{args.pairs}): python "
        f"{summary['python_cpu_ms']} ms + postgres {summary['pg_backend_cpu_ms']} ms CPU per "
        f"redemption, {summary['statements']} statements"
        + (f", {calls} python calls" if calls is not None else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
