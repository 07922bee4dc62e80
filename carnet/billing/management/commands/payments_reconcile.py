"""Resolve card charges and refunds left without an answer (a crash, a lost response)."""

import datetime as dt

from django.core.management.base import BaseCommand

from carnet.billing.card_attempts import RECONCILE_AFTER, attempts_reconcile


class Command(BaseCommand):
    help = (
        "Ask the card gateway what became of every card attempt still pending or unknown after "
        f"{int(RECONCILE_AFTER.total_seconds() // 60)} minutes, and record it exactly once. "
        "Safe to run concurrently and as often as you like; passes_daily runs it too."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-minutes",
            type=int,
            default=int(RECONCILE_AFTER.total_seconds() // 60),
            help="only attempts at least this old (default %(default)s)",
        )

    def handle(self, *args, older_than_minutes: int, **options):
        counts = attempts_reconcile(older_than=dt.timedelta(minutes=max(older_than_minutes, 0)))
        self.stdout.write(
            f"recorded {counts['succeeded']} · failed (no money moved) {counts['failed']} · still "
            f"unknown {counts['unknown']} · waiting for the card holder's bank "
            f"{counts['pending']} · errors {counts['errors']}"
        )
