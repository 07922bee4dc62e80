import os

from django.db import connection


def test_suite_runs_on_the_database_the_environment_names():
    """Guards CI: a DATABASE_URL run must really hit PostgreSQL, not fall back to SQLite."""
    url = os.environ.get("DATABASE_URL", "sqlite:")
    expected = "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"
    assert connection.vendor == expected
