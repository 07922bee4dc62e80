"""Domain errors: a stable code for machines and a sentence for people.

The API turns them into RFC 9457 problem details; pages show the sentence.
"""

from __future__ import annotations

from django.db import OperationalError


class CarnetError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class ValidationFailed(CarnetError):
    status = 422
    code = "invalid"


class NotFound(CarnetError):
    status = 404
    code = "not_found"


class NotAllowed(CarnetError):
    status = 403
    code = "not_allowed"


class Conflict(CarnetError):
    status = 409
    code = "conflict"


def validation_from_django(exc, *, names: dict[str, str] | None = None) -> ValidationFailed:
    """Wrap a django.core.exceptions.ValidationError, keeping the field names
    (renamed through `names`, model field -> the name the caller sent)."""
    names = names or {}
    if hasattr(exc, "message_dict"):
        fields = {
            names.get(name, name): [str(m) for m in msgs] for name, msgs in exc.message_dict.items()
        }
    else:
        fields = {"__all__": [str(m) for m in exc.messages]}
    first_field, first_msgs = next(iter(fields.items()))
    where = "" if first_field == "__all__" else f"{first_field.replace('_', ' ')}: "
    return ValidationFailed(f"Please correct {where}{first_msgs[0]}", fields=fields)


# PostgreSQL's deadlock_detected and serialization_failure: the server aborted this transaction so
# that another could go on; nothing of it was written.
_CONTENTION_SQLSTATES = {"40P01", "40001"}


def is_contention(exc: BaseException) -> bool:
    """The database gave up on this transaction because another held what it needed (a deadlock, a
    serialization failure, SQLite's write lock not freed within its timeout): nothing was written,
    and the same request may simply run again."""

    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in _CONTENTION_SQLSTATES or "database is locked" in str(
        exc
    )
