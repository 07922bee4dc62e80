"""Benchmark 5 (issue 21): switching a clinic in — importing 10,000 patients and 20,000 packages
(`import_commit`, the same service as `manage.py import_data … --commit`, each kind in one
transaction with its dry-run checks and opening balances). Target: both in under 60 s.

Each run imports a fresh set (external ids carry the run's time), so earlier runs never make it
skip rows; nothing is cleaned up (use the dedicated benchmark database).
"""

from __future__ import annotations

import datetime as dt
import time

from common import base, emit, machine

TEMPLATE = "Bench imported package"
TARGET_S = 60.0


def _template(b):
    from carnet.core import clock
    from carnet.passes.models import EligibleItem, PassTemplate

    template = PassTemplate.objects.filter(name=TEMPLATE).first()
    if template is None:
        now = clock.now()
        template = PassTemplate.objects.create(
            name=TEMPLATE,
            price_minor=10000,
            quantity=10,
            income_category=b["category"],
            created_at=now,
            updated_at=now,
        )
        EligibleItem.objects.create(template=template, treatment=b["treatment"])
    return template


def run(args) -> dict:
    from carnet.imports.generate import clinic_files
    from carnet.imports.services import import_commit

    b = base()
    _template(b)
    people = 1000 if args.quick else args.import_patients
    passes = 2000 if args.quick else args.import_passes
    files = clinic_files(
        patients=people, passes=passes, template_name=TEMPLATE, prefix=f"B{int(time.time())}"
    )
    seconds, cpu = {}, {}
    for kind in ("patients", "packages"):
        started, started_cpu = time.perf_counter(), time.process_time()
        batch = import_commit(
            actor=b["owner"].user,
            kind=kind,
            data=files[kind],
            file_name=f"bench-{kind}.csv",
            cut_over=dt.date.today(),
        )
        seconds[kind] = round(time.perf_counter() - started, 2)
        cpu[kind] = round(
            time.process_time() - started_cpu, 2
        )  # Carnet's own CPU, without the database's
        assert batch.created == (people if kind == "patients" else passes), batch
    total = round(sum(seconds.values()), 2)
    result = {
        "benchmark": "imports",
        "patients": people,
        "packages": passes,
        "seconds": seconds,
        "python_cpu_s": cpu,
        "total_s": total,
        "target_s": TARGET_S,
        "pass": total < TARGET_S,
        "machine": machine(),
    }
    emit(
        result,
        f"imports: {people:,} patients in {seconds['patients']} s + {passes:,} packages in "
        f"{seconds['packages']} s = {total} s (target < {TARGET_S:.0f} s) "
        f"{'PASS' if result['pass'] else 'MISS'}",
    )
    return result
