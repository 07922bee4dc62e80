"""`manage.py backup FILE`: a consistent copy of the database (see carnet/core/backups.py)."""

from django.core.management.base import BaseCommand, CommandError

from carnet.core.backups import backup_write
from carnet.core.errors import CarnetError


class Command(BaseCommand):
    help = (
        "Write a consistent backup of the database to FILE (SQLite online backup, or pg_dump -Fc)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            path = backup_write(file)
        except CarnetError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Backup written to {path}.")
