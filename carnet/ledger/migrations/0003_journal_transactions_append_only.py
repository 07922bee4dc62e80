"""Journal transaction rows (date, kind, memo, source, what they reverse) are append-only like their
postings (issue 17): a wrong entry is corrected by a reversing transaction, never edited or deleted.

Same shape as 0002: PostgreSQL refuses UPDATE and DELETE with a row trigger (TRUNCATE, the test flush,
fires none); SQLite the same with two triggers, which the ledger's `flush` command lifts while it
empties the tables. Altering ledger_journaltransaction on SQLite rebuilds the table and drops these
triggers: a later migration that does so must re-create them.
"""

from django.db import migrations

APPEND_ONLY = "ledger journal transactions are append-only: post a reversing transaction instead"

POSTGRESQL = [
    f"""
    CREATE FUNCTION ledger_transaction_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER ledger_transaction_append_only BEFORE UPDATE OR DELETE ON ledger_journaltransaction
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_refuse_change()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS ledger_transaction_append_only ON ledger_journaltransaction",
    "DROP FUNCTION IF EXISTS ledger_transaction_refuse_change()",
]

SQLITE = [
    f"""
    CREATE TRIGGER ledger_transaction_no_update BEFORE UPDATE ON ledger_journaltransaction
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END
    """,
    f"""
    CREATE TRIGGER ledger_transaction_no_delete BEFORE DELETE ON ledger_journaltransaction
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS ledger_transaction_no_update",
    "DROP TRIGGER IF EXISTS ledger_transaction_no_delete",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_postings_append_only_and_balanced")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
