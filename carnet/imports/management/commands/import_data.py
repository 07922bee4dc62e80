"""manage.py import_data KIND FILE [--commit]: the dry run by default; --commit writes it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError
from carnet.imports.columns import COLUMNS
from carnet.imports.models import ImportBatch
from carnet.imports.services import import_commit, import_preview, import_undo


class Command(BaseCommand):
    help = (
        "Import patients, packages, memberships, account credit or gift cards from a CSV or XLSX "
        "file. Without --commit it is a dry run: it shows what would be created and every "
        "problem, and exits 1 if any row is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "kind", choices=[*COLUMNS, "undo"], help="what the file holds (or undo BATCH_ID)"
        )
        parser.add_argument("file", help="the CSV or XLSX file (for undo: the import's number)")
        parser.add_argument("--commit", action="store_true", help="write it (all rows or none)")
        parser.add_argument(
            "--cut-over",
            type=dt.date.fromisoformat,
            default=None,
            help="date of the opening balances, YYYY-MM-DD (default: today in the clinic)",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=HEADER",
            help="read a Carnet column from the file's header HEADER (repeatable)",
        )

    def handle(self, *args, **o):
        try:
            if o["kind"] == "undo":
                return self._undo(o["file"])
            path = Path(o["file"])
            if not path.is_file():
                raise CommandError(f"No such file: {path}")
            mapping = {}
            for pair in o["map"]:
                key, sep, header = pair.partition("=")
                if not sep:
                    raise CommandError(f"--map takes COLUMN=HEADER, got {pair!r}")
                mapping[key.strip()] = header.strip()
            kwargs = dict(
                actor=None,
                action=None,
                kind=o["kind"],
                data=path.read_bytes(),
                file_name=path.name,
                cut_over=o["cut_over"],
                mapping=mapping,
            )
            preview = import_preview(**kwargs)
            self._show(preview)
            if not preview.ok:
                raise CommandError(
                    f"{len(preview.plan.problems)} problem(s): nothing was imported."
                )
            if not o["commit"]:
                self.stdout.write(
                    "Dry run: nothing was written. Run again with --commit to import."
                )
                return
            batch = import_commit(**kwargs)
        except CarnetError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported: {batch} — {batch.created} created, {batch.skipped} already imported."
            )
        )

    def _undo(self, number: str):
        batch = ImportBatch.objects.filter(pk=int(number) if number.isdigit() else 0).first()
        if batch is None:
            raise CommandError(f"No import #{number}.")
        import_undo(actor=None, action=None, batch=batch)
        self.stdout.write(self.style.SUCCESS(f"Undone: {batch}."))

    def _show(self, preview):
        plan, money = preview.plan, clinic_get().money
        out = self.stdout.write
        out(
            f"{preview.file_name}: {plan.encoding}, {plan.total_rows} rows, "
            f"cut-over {preview.cut_over}"
        )
        out("Columns: " + "; ".join(f"{label} ← {header}" for label, header in preview.mapped()))
        out(
            f"Would create {len(plan.rows)} {preview.kind.replace('_', ' ')}; {len(plan.skipped)} "
            f"already imported (left alone); opening balances {money(plan.money_minor)}"
        )
        if plan.elsewhere:
            other = "memberships" if preview.kind == "packages" else "packages"
            out(
                f"{len(plan.elsewhere)} rows are {other}, left for an import of the file as "
                f"{other} (lines "
                f"{', '.join(map(str, plan.elsewhere[:10]))}"
                f"{'…' if len(plan.elsewhere) > 10 else ''})"
            )
        for row in preview.first_rows():
            out(
                f"  line {row.pop('line')}: "
                + ", ".join(f"{k}={v}" for k, v in row.items() if v not in ("", None))
            )
        for problem in plan.problems:
            out(self.style.ERROR(f"  {problem}"))
