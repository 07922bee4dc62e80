"""`manage.py passes_daily [--date YYYY-MM-DD]`: schedule it once a day (see the README)."""

import datetime as dt
import json

from django.core.management.base import BaseCommand

from carnet.passes.jobs import passes_daily


class Command(BaseCommand):
    help = "Invoice and charge due payment-plan instalments, expire passes, send expiry reminders."

    def add_arguments(self, parser):
        parser.add_argument(
            "--date",
            type=dt.date.fromisoformat,
            help="Run as of this date (default: today in the clinic's time zone).",
        )

    def handle(self, *args, date=None, **options):
        self.stdout.write(json.dumps(passes_daily(today=date)))
