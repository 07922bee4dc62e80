"""Database guards for the ledger (CONVENTIONS habits 7 and 8).

PostgreSQL: postings refuse UPDATE and DELETE, and a deferred constraint trigger checks at
commit that each journal transaction's postings sum to zero. SQLite (development and tests):
the same refusal of UPDATE/DELETE; balance there is the posting service's job alone.

TRUNCATE (PostgreSQL's test flush) fires no row triggers; on SQLite the ledger's own `flush`
command lifts the triggers for the length of the flush. Note for later migrations: altering
ledger_posting on SQLite rebuilds the table and drops its triggers, so re-create them there.
"""

from django.db import migrations

APPEND_ONLY = "ledger postings are append-only: post a reversing transaction instead"

POSTGRESQL = [
    f"""
    CREATE FUNCTION ledger_posting_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER ledger_posting_append_only BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_posting_refuse_change()
    """,
    """
    CREATE FUNCTION ledger_transaction_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        total numeric;
    BEGIN
        SELECT COALESCE(SUM(amount), 0) INTO total FROM ledger_posting WHERE transaction_id = NEW.transaction_id;
        IF total <> 0 THEN
            RAISE EXCEPTION 'ledger journal transaction % does not balance: postings sum to %',
                NEW.transaction_id, total USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    # Deferred to commit: a transaction's postings arrive one row at a time.
    """
    CREATE CONSTRAINT TRIGGER ledger_posting_balanced AFTER INSERT ON ledger_posting
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_check_balanced()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting",
    "DROP FUNCTION IF EXISTS ledger_transaction_check_balanced()",
    "DROP TRIGGER IF EXISTS ledger_posting_append_only ON ledger_posting",
    "DROP FUNCTION IF EXISTS ledger_posting_refuse_change()",
]

SQLITE = [
    f"""
    CREATE TRIGGER ledger_posting_no_update BEFORE UPDATE ON ledger_posting
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END
    """,
    f"""
    CREATE TRIGGER ledger_posting_no_delete BEFORE DELETE ON ledger_posting
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS ledger_posting_no_update",
    "DROP TRIGGER IF EXISTS ledger_posting_no_delete",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        # params=None: the SQL holds plpgsql's own % placeholders, not driver parameters.
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_chart_of_accounts_and_journal")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
