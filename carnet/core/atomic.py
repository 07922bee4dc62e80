"""One durable transaction per keyed API request (issue 25): the services on the front desk's
busiest path join it without a savepoint of their own.

A service is its own database transaction when called alone. Inside another transaction
`transaction.atomic()` opens a savepoint (two statements) only so that a refusal raised half-way
undoes the service's writes while the caller goes on. Inside a keyed API request nobody goes on
after a refusal: the idempotency middleware (core.middleware) rolls the whole request back and
keeps the refusal for replay in a transaction of its own. So a service marked `@atomic.service`
joins that request's transaction without a savepoint; anywhere else — alone, in a page, in a job,
or below a savepoint someone opened to catch a refusal — it is `transaction.atomic()` as before.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from django.db import connection, transaction

# On the connection: the depth of savepoints at which the keyed request's transaction began.
_DEPTH = "carnet_request_depth"


@contextmanager
def request():
    """The keyed API request's transaction (the middleware's): services marked `service` inside
    it, with no savepoint between, join it. On a refusal they leave it marked for rollback
    (connection.needs_rollback), and the middleware stores the refusal afterwards."""
    with transaction.atomic():
        outer = getattr(connection, _DEPTH, None)
        setattr(connection, _DEPTH, len(connection.savepoint_ids))
        try:
            yield
        finally:
            setattr(connection, _DEPTH, outer)


def joins_request() -> bool:
    """True inside a keyed API request's transaction with no savepoint opened since: a refusal
    here rolls the whole request back, so no savepoint of its own is needed."""
    depth = getattr(connection, _DEPTH, None)
    return (
        depth is not None
        and connection.in_atomic_block
        and all(sid is None for sid in connection.savepoint_ids[depth:])
    )


def service(func):
    """`transaction.atomic` for a service, without its savepoint when it joins a keyed API
    request's transaction (joins_request)."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        with transaction.atomic(savepoint=not joins_request()):
            return func(*args, **kwargs)

    return run
