"""The benchmarks (benchmarks/) and the opt-in million-redemption test write their data with
hand-written INSERTs, run rarely: a column added to a table they write broke them unseen twice
(`passes_redemption.breakage_minor`, `passes_passinvoice.decline_kind`). These tests keep them
in step with the models in the normal suite: every INSERT's column list is checked against the
model on any database, and on PostgreSQL the benchmarks' own data-making code runs at a few rows."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection

from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.bulk import default_columns, unlisted_required
from carnet.passes.models import PassInvoice, Redemption

ROOT = Path(__file__).resolve().parents[3]
SOURCES = sorted((ROOT / "benchmarks").glob("*.py")) + [
    ROOT / "carnet" / "reports" / "tests" / "test_pass_reports.py"
]
INSERT = re.compile(r"INSERT INTO (\w+)\s*\(([^)]*)\)\s*(?:SELECT\s+(\{\w+\})?)?", re.S)
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _inserts():
    for path in SOURCES:
        for match in INSERT.finditer(path.read_text()):
            yield path.relative_to(ROOT), match.group(1), match.group(2), match.group(3)


def test_every_benchmark_insert_names_or_defaults_every_not_null_column():
    tables = {m._meta.db_table: m for m in apps.get_models()}
    seen, problems = set(), []
    for path, table, listed, copied in _inserts():
        seen.add(table)
        assert table in tables, f"{path}: INSERT INTO {table}, a table no model has"
        model = tables[table]
        placeholders = PLACEHOLDER.findall(listed)
        columns = [c.strip().strip('"') for c in PLACEHOLDER.sub("", listed).split(",")]
        columns = [c for c in columns if c]
        if placeholders and copied == f"{{{placeholders[0]}}}":
            continue  # INSERT INTO t ({cols}, …) SELECT {cols}, … FROM t: every column copied
        # With a placeholder the rest is filled with the model's defaults (default_columns);
        # in plain SQL a Python-side default is no default.
        missing = unlisted_required(model, columns, model_defaults=bool(placeholders))
        if missing:
            problems.append(f"{path}: INSERT INTO {table} leaves out NOT NULL {missing}")
    assert not problems, "\n".join(problems)
    # The check saw the statements it is for (a regex that stopped matching would pass vacuously).
    assert {"passes_redemption", "passes_passinvoice", "scheduling_visit"} <= seen, seen


def test_default_columns_fills_what_an_insert_leaves_out_and_names_what_it_cannot(db):
    given = [
        f.column
        for f in Redemption._meta.concrete_fields
        if not f.has_default() and not f.primary_key
    ]
    assert "breakage_minor" not in given
    assert unlisted_required(Redemption, given) == []
    with pytest.raises(ValueError, match="sold_pass_id"):
        default_columns(Redemption, [c for c in given if c != "sold_pass_id"])
    if connection.vendor != "postgresql":
        return
    columns, values = default_columns(Redemption, given)
    assert '"breakage_minor"' in columns and "CAST(0 AS bigint)" in values


@pytest.fixture
def bench_modules():
    if connection.vendor != "postgresql":
        pytest.skip("the benchmarks' INSERT … SELECT generate_series is PostgreSQL's")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        # late: the benchmarks are scripts, importable only with benchmarks/ on sys.path
        import billing_job
        import common
        import pass_report

        yield common, pass_report, billing_job
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_the_pass_report_benchmark_builds_its_data_at_ten_rows(db, bench_modules):
    common, pass_report, _ = bench_modules
    built = pass_report.build(common.base(), 10, rebuild=True)
    uses = Redemption.objects.filter(sold_pass__template=built["template"], status="posted")
    assert uses.count() == 10
    assert uses.filter(visit__invoice__isnull=False).count() == 10


def test_the_billing_job_benchmark_copies_memberships_and_writes_its_baseline(db, bench_modules):
    common, _, billing_job = bench_modules
    b = common.base()
    today = clock.today(clinic_get().time_zone)
    template = billing_job._template(b)
    source, copies = billing_job._memberships(b, template, 3, today)
    assert len(copies) == 3
    billing_job._baseline(source, copies, today)
    assert PassInvoice.objects.filter(sold_pass_id__in=copies, seq=1).count() == 3
