"""Backups (SPEC 13): a consistent copy of the whole database, and putting one back.

SQLite: the online backup API copies the live file page by page under a read lock, so writers
may keep working and the copy is one consistent moment. PostgreSQL: pg_dump's custom format
(one consistent snapshot) and pg_restore --clean, which drops and recreates every table, its
data, indexes and the ledger's triggers. After a restore, run `manage.py ledger_check`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from django.db import connection

from .errors import ValidationFailed


def _pg_args(settings: dict) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if settings.get("PASSWORD"):
        env["PGPASSWORD"] = str(settings["PASSWORD"])  # through the environment, never argv
    args = ["--no-password", "--dbname", settings["NAME"]]
    if settings.get("HOST"):
        args += ["--host", str(settings["HOST"])]
    if settings.get("PORT"):
        args += ["--port", str(settings["PORT"])]
    if settings.get("USER"):
        args += ["--username", str(settings["USER"])]
    return args, env


def backup_write(path: str | Path) -> Path:
    """Write a backup of the database to `path` (a new file)."""
    path = Path(path)
    if path.exists():
        raise ValidationFailed(
            f"{path} already exists; choose a new file name so no backup is overwritten.",
            fields={"path": ["Exists."]},
        )
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        with sqlite3.connect(path) as target:
            connection.connection.backup(target)
        target.close()
    elif connection.vendor == "postgresql":
        args, env = _pg_args(connection.settings_dict)
        subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", "--file", str(path), *args],
            check=True,
            env=env,
        )
    else:
        raise ValidationFailed(f"Backups support SQLite and PostgreSQL, not {connection.vendor}.")
    return path


def backup_restore(path: str | Path) -> None:
    """Replace the database's contents with the backup at `path` (made by backup_write)."""
    path = Path(path)
    if not path.is_file():
        raise ValidationFailed(
            f"There is no backup file at {path}.", fields={"path": ["Not found."]}
        )
    if connection.vendor == "sqlite":
        connection.close()
        connection.ensure_connection()
        with sqlite3.connect(path) as source:
            source.backup(connection.connection)
        source.close()
    elif connection.vendor == "postgresql":
        connection.close()  # pg_restore drops the tables; our own session must not hold them
        args, env = _pg_args(connection.settings_dict)
        subprocess.run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                *args,
                str(path),
            ],
            check=True,
            env=env,
        )
    else:
        raise ValidationFailed(f"Backups support SQLite and PostgreSQL, not {connection.vendor}.")
