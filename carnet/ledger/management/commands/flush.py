"""Django's flush, able to empty the ledger on SQLite.

SQLite flushes with DELETE, which the append-only triggers (postings and journal transactions)
refuse (PostgreSQL uses TRUNCATE, which fires no row triggers). Test teardown (TransactionTestCase)
calls this command too. The triggers are dropped and re-created from their own stored SQL inside one
transaction, so a failed flush leaves them in place.
"""

from django.core.management.commands import flush
from django.db import connections, transaction

from carnet.ledger.models import JournalTransaction, Posting


class Command(flush.Command):
    def handle(self, **options):
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            return super().handle(**options)
        with transaction.atomic(using=connection.alias):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name "
                    "IN (%s, %s)",
                    [Posting._meta.db_table, JournalTransaction._meta.db_table],
                )
                triggers = cursor.fetchall()
                for name, _ in triggers:
                    cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)}")
            super().handle(**options)
            with connection.cursor() as cursor:
                for _, sql in triggers:
                    cursor.execute(sql)
