"""Carnet's benchmark suite (issue 9). `make bench` runs all four; see benchmarks/README.md.

    .venv/bin/python benchmarks/run.py
    [all|redemption|report|billing-job|billing-tab|imports|schedule] [--quick] [options]

Each benchmark prints one JSON line and a one-line summary. Exit status 1 if a target was missed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import django_setup  # noqa: E402

NAMES = ("redemption", "report", "billing-job", "billing-tab", "imports", "schedule")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", nargs="?", default="all", choices=("all", *NAMES))
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for development (figures not comparable)"
    )
    redemption = parser.add_argument_group("redemption")
    redemption.add_argument(
        "--clients", default="1,4,16", help="concurrency levels (default 1,4,16)"
    )
    redemption.add_argument(
        "--ops",
        type=int,
        default=0,
        help="redemptions per variant and level, each run twice (default 400; quick 40)",
    )
    # The README's production command (gunicorn -w 4 --threads 4), for the API and the floor alike.
    redemption.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    redemption.add_argument(
        "--threads", type=int, default=4, help="gunicorn threads per worker (default 4)"
    )
    redemption.add_argument(
        "--worker-class",
        default="gthread",
        choices=("gthread", "sync"),
        help="gunicorn -k (default gthread; sync ignores --threads)",
    )
    redemption.add_argument("--port", type=int, default=8765)
    redemption.add_argument(
        "--plumbed",
        action="store_true",
        help="also the plumbed floor: the floor's statements behind Carnet's middleware and token "
        "auth (port + 2)",
    )
    redemption.add_argument(
        "--no-idempotency",
        dest="idempotency",
        action="store_false",
        help="send API POSTs without an Idempotency-Key",
    )
    report = parser.add_argument_group("report")
    report.add_argument(
        "--redemptions",
        type=int,
        default=0,
        help="generated redemptions (default 1,000,000; quick 50,000)",
    )
    report.add_argument("--rebuild", action="store_true", help="regenerate the report's data set")
    job = parser.add_argument_group("billing-job")
    job.add_argument(
        "--memberships", type=int, default=0, help="memberships due (default 100,000; quick 2,000)"
    )
    tab = parser.add_argument_group("billing-tab")
    tab.add_argument("--tab-passes", type=int, default=200)
    tab.add_argument("--tab-invoices", type=int, default=500)
    tab.add_argument(
        "--max-queries", type=int, default=60, help="the asserted query bound per page"
    )
    imports = parser.add_argument_group("imports")
    imports.add_argument(
        "--import-patients", type=int, default=10000, help="patients imported (quick 1,000)"
    )
    imports.add_argument(
        "--import-passes", type=int, default=20000, help="packages imported (quick 2,000)"
    )
    args = parser.parse_args(argv)

    django_setup()
    import billing_job
    import billing_tab
    import imports
    import pass_report
    import redemption as redeem
    import schedule_pages

    chosen = NAMES if args.benchmark == "all" else (args.benchmark,)
    runners = {
        "redemption": redeem.run,
        "report": pass_report.run,
        "billing-job": billing_job.run,
        "billing-tab": billing_tab.run,
        "imports": imports.run,
        "schedule": schedule_pages.run,
    }
    results = [runners[name](args) for name in chosen]
    return 0 if all(r.get("pass") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
