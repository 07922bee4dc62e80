"""`manage.py restore FILE --yes`: replace the database with a backup, then check the ledger."""

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from carnet.core.backups import backup_restore
from carnet.core.errors import CarnetError


class Command(BaseCommand):
    help = "Replace the database's contents with the backup FILE, then run ledger_check."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Confirm: everything now in the database is replaced.",
        )

    def handle(self, *args, file, yes=False, **options):
        if not yes:
            raise CommandError(
                "Restoring replaces everything in the database. Run again with --yes to confirm."
            )
        try:
            backup_restore(file)
        except CarnetError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Restored from {file}. Checking the ledger…")
        call_command("ledger_check", stdout=self.stdout)
