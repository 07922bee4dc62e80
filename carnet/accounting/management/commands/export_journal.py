"""manage.py export_journal --format qbo|xero|iif --from DATE --to DATE --output DIR"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from carnet.accounting.services import journal_export
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError


class Command(BaseCommand):
    help = (
        "Export the ledger's journals for a period in the format QuickBooks Online, "
        "Xero or QuickBooks Desktop imports."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=["qbo", "xero", "iif"])
        parser.add_argument(
            "--from", dest="start", required=True, type=dt.date.fromisoformat, help="YYYY-MM-DD"
        )
        parser.add_argument(
            "--to",
            dest="end",
            required=True,
            type=dt.date.fromisoformat,
            help="YYYY-MM-DD, included (days in the clinic's time zone)",
        )
        parser.add_argument("--output", required=True, help="directory to write the file(s) into")
        parser.add_argument(
            "--detailed", action="store_true", help="one journal per transaction (default: per day)"
        )
        parser.add_argument(
            "--allow-overlap",
            action="store_true",
            help="export even though the period overlaps an earlier export",
        )

    def handle(self, *args, **o):
        out = Path(o["output"])
        if not out.is_dir():
            raise CommandError(f"No such directory: {out}")
        try:
            export = journal_export(
                actor=None,
                action=None,
                fmt=o["format"],
                start=o["start"],
                end=o["end"],
                detailed=o["detailed"],
                allow_overlap=o["allow_overlap"],
            )
        except CarnetError as exc:
            raise CommandError(exc.message) from None
        for name, text in export.files:
            (out / name).write_text(text, encoding="utf-8", newline="")
            self.stdout.write(str(out / name))
        batch = export.batch
        self.stdout.write(
            self.style.SUCCESS(
                f"{batch}: {batch.journals} journals, {batch.lines} lines, debits = credits = "
                f"{clinic_get().money(batch.debits_minor)}, tied to the trial balance."
            )
        )
