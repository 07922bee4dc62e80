"""Shared helpers: Django set-up against the benchmark database, the clinic fixture every benchmark
builds on, timing statistics and the one-JSON-line-plus-summary output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/carnet_bench"


def django_setup() -> None:
    """Production settings (DEBUG off) against DATABASE_URL (PostgreSQL only)."""
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ["DEBUG"] = "0"
    os.environ.setdefault(
        "SECRET_KEY", "carnet-bench-only"
    )  # a throwaway database, nothing to protect
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "carnet.settings")
    if not os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        sys.exit("The benchmarks run against PostgreSQL: set DATABASE_URL=postgres://…")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def dsn() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_URL)


def machine() -> dict:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg = cur.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "postgresql": pg,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def latency(samples: list[float]) -> dict:
    """p50/p99 in milliseconds from seconds."""
    if not samples:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2)}


def emit(result: dict, summary: str) -> None:
    """One JSON line (machine-readable), then one human summary line."""
    print(json.dumps(result, default=str), flush=True)
    print(summary, flush=True)


# ---------------------------------------------------------------- the clinic every benchmark uses

BENCH = "Bench"


def base() -> dict:
    """The clinic, a location, a treatment, an owner with an API token and
    practitioners (idempotent)."""
    from django.contrib.auth import get_user_model

    from carnet.clinic.models import Clinic, Discipline, IncomeCategory, Location, Tax, Treatment
    from carnet.clinic.selectors import clinic_get
    from carnet.core import clock
    from carnet.core.permissions import AccessLevel
    from carnet.people.models import StaffMember

    clinic_get()
    # Pre-booking thousands of visits should not trip the overlap check; the benchmarks time the
    # redemption, not the booking.
    Clinic.objects.filter(pk=1).update(allow_double_booking=True, time_zone="America/Toronto")
    location, _ = Location.objects.get_or_create(
        name=f"{BENCH} location", defaults={"time_zone": "America/Toronto"}
    )
    discipline, _ = Discipline.objects.get_or_create(name=f"{BENCH} massage")
    category, _ = IncomeCategory.objects.get_or_create(name=f"{BENCH} income")
    tax, _ = Tax.objects.get_or_create(name=f"{BENCH} HST", defaults={"rate": "13.000"})
    treatment = Treatment.objects.filter(name=f"{BENCH} massage 60", discipline=discipline).first()
    if treatment is None:
        treatment = Treatment.objects.create(
            name=f"{BENCH} massage 60",
            discipline=discipline,
            income_category=category,
            duration_minutes=60,
            price_minor=9000,
        )
        treatment.taxes.set([tax])
    User = get_user_model()
    owner = StaffMember.objects.filter(user__username="bench-owner").first()
    if owner is None:
        user = User.objects.create_user(
            username="bench-owner",
            email="bench-owner@example.test",
            password="bench bench bench bench",
        )
        owner = StaffMember.objects.create(
            user=user,
            display_name="Bench Owner",
            access_level=AccessLevel.ACCOUNT_OWNER,
            can_access_billing=True,
            is_practitioner=True,
        )
        owner.locations.add(location)
    pracs = list(StaffMember.objects.filter(user__username__startswith="bench-prac").order_by("pk"))
    for n in range(len(pracs), 4):
        user = User.objects.create_user(
            username=f"bench-prac{n}",
            email=f"bench-prac{n}@example.test",
            password="bench bench bench bench",
        )
        prac = StaffMember.objects.create(
            user=user,
            display_name=f"Bench Practitioner {n}",
            access_level=AccessLevel.PRACTITIONER_FRONT_DESK,
            is_practitioner=True,
            can_access_billing=True,
        )
        prac.locations.add(location)
        pracs.append(prac)
    del clock
    return {
        "location": location,
        "discipline": discipline,
        "category": category,
        "tax": tax,
        "treatment": treatment,
        "owner": owner,
        "practitioners": pracs,
    }


def patients(prefix: str, count: int) -> list:
    """`count` patients named `prefix` N (created once)."""
    from carnet.core import clock
    from carnet.people.models import Patient

    have = list(Patient.objects.filter(last_name=prefix).order_by("pk")[:count])
    new = [
        Patient(
            first_name=f"P{n}",
            last_name=prefix,
            email=f"{prefix.lower()}{n}@example.test",
            created_at=clock.now(),
        )
        for n in range(len(have), count)
    ]
    if new:
        Patient.objects.bulk_create(new)
        have = list(Patient.objects.filter(last_name=prefix).order_by("pk")[:count])
    return have


def page_client(user):
    """A page client logged in as `user`. The benchmarks time pages, not the log-in: the
    second-factor step Full Access and Account Owner logins go through (issue 18) is switched
    off in this process."""
    from django.conf import settings
    from django.test import Client

    settings.TWO_FACTOR_ENFORCED = False
    client = Client(HTTP_HOST="localhost")  # an allowed host: DEBUG is off
    client.force_login(user)
    return client


# -------------------------------------------------------- CPU time of other processes (Linux /proc)

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(select) -> float:
    """User + system CPU of every process `select(comm, pgrp)` accepts, with the time of its
    children already reaped (PostgreSQL's postmaster reaps backends that end during
    a run), in seconds."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:  # ended between the listing and the read
            continue
        comm = data[data.index("(") + 1 : data.rindex(")")]
        fields = data[data.rindex(")") + 2 :].split()
        if select(comm, int(fields[2])):
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / TICK


def server_cpu(pgrp: int) -> float:
    """CPU seconds of a server started in its own session (gunicorn's master and workers)."""
    return _cpu_seconds(lambda comm, group: group == pgrp)


def postgres_cpu() -> float:
    """CPU seconds of PostgreSQL on this machine (postmaster, backends, background workers)."""
    return _cpu_seconds(lambda comm, group: comm == "postgres")
