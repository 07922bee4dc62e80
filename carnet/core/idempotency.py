"""Idempotency keys: who a key belongs to, how long it lives, and the keys of page forms.

API requests (core.middleware): a key is scoped to the caller — the user, however they
authenticated — and is remembered for IDEMPOTENCY_KEY_HOURS.

Page forms: each rendered form carries a key that may be used once. Call claim_form_key()
inside the same transaction as the write it protects: a double submit (two clicks, a reload)
then finds the key taken and does nothing, and a write that rolls back frees the key for a retry.
"""

import datetime as dt
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.urls import URLResolver, get_resolver

from . import clock
from .errors import CarnetError
from .models import IdempotencyRecord


class IdempotencyKeyRequired(CarnetError):
    status = 400
    code = "idempotency_key_required"


def request_key(request, *, required: bool = False, why: str = "") -> str | None:
    """The request's Idempotency-Key scoped to its caller (see scoped_key), for the calls it makes
    out; None without a key, or, when `required`, a 400 saying `why` it cannot go without one."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        if required:
            raise IdempotencyKeyRequired(
                f"Send an Idempotency-Key header with this request: {why} Without a key, "
                "a retry after a lost answer could move the money twice; with one, "
                "the retry returns the first answer."
            )
        return None
    scope = getattr(request, "idempotency_scope", None) or caller_scope(request)
    return scoped_key(scope=scope or "", key=key)


def calls_gateway(when=lambda request, body, kwargs: True):
    """Mark an API endpoint that may charge or refund a card; `when(request, body, url_kwargs)` says
    whether this request does. Such a request with an Idempotency-Key is not wrapped in the
    middleware's transaction (no gateway call inside a transaction): the endpoint's service is
    itself keyed by the request (a card attempt's request key), and the middleware stores the
    answer after it, for replay."""

    def mark(view):
        view.calls_gateway = when
        return view

    return mark


def _operations(view) -> list:
    # django-ninja serves every method of a path from one view that holds its PathView in a closure.
    for cell in getattr(view, "__closure__", None) or ():
        operations = getattr(cell.cell_contents, "operations", None)
        if operations:
            return operations
    return []


@functools.cache
def _gateway_routes() -> tuple:
    """(compiled full-path regex, when) for every POST marked calls_gateway, found once in the URL
    configuration, so each keyed API POST tests a few regexes instead of
    resolving its path again."""

    routes = []

    def walk(patterns, prefix: str):
        for pattern in patterns:
            regex = pattern.pattern.regex.pattern.lstrip("^")
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + regex)
                continue
            for operation in _operations(pattern.callback):
                when = getattr(operation.view_func, "calls_gateway", None)
                if when is not None and "POST" in operation.methods:
                    routes.append((re.compile(prefix + regex), when))

    walk(get_resolver().url_patterns, "")
    return tuple(routes)


def gateway_request(request, body: bytes) -> bool:
    """True when this API POST goes to an endpoint marked calls_gateway and its `when` says yes."""
    path = request.path_info.lstrip("/")
    for regex, when in _gateway_routes():
        match = regex.match(path)
        if match is None:
            continue
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return False  # the endpoint refuses it (422) before any card is touched
        return bool(when(request, data if isinstance(data, dict) else {}, match.groupdict()))
    return False


def once_per_key(*, scope: str, key: str, make) -> int:
    """Inside the caller's transaction: run `make()` (it returns a primary key) once per scope and
    key; the same key again returns the first one's key, whatever happened to the answer."""
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                scope=scope,
                key=key,
                request_hash="",
                status_code=201,
                content_type="application/json",
                body=b"{}",
                created_at=clock.now(),
            )
    except IntegrityError:
        return json.loads(bytes(IdempotencyRecord.objects.get(scope=scope, key=key).body))["pk"]
    pk = make()
    IdempotencyRecord.objects.filter(pk=record.pk).update(body=json.dumps({"pk": pk}).encode())
    return pk


def withhold_response(request) -> None:
    """This request's answer holds a secret: its Idempotency-Key stays taken,
    its body is never stored."""
    request.idempotency_withhold = True


def scoped_key(*, scope: str, key: str) -> str:
    """One caller's key as the gateway sees it: two callers choosing the same
    key are two charges."""
    return "api-" + hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()


# Whose bearer token this is: people sits above core and owns the token table, so it registers
# its lookup here when it loads (people.apps) and core imports no app.
_bearer_owner: Callable[[object, str], int | None] | None = None


def bearer_owner_register(owner: Callable[[object, str], int | None]) -> None:
    """`owner(request, raw_token)`: the user id behind an active token, else None."""
    global _bearer_owner
    _bearer_owner = owner


def caller_scope(request) -> str | None:
    """Whose keys these are: the user behind a bearer token or the session (one scope for both),
    else an anonymous session; None when there is nobody to tell apart."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":  # read like the API's own HttpBearer: the scheme in any case
        if _bearer_owner is None:
            raise ImproperlyConfigured("No bearer token lookup registered (carnet.people.apps).")
        user_id = _bearer_owner(request, raw)
        return f"user:{user_id}" if user_id else None  # a wrong token is refused (401)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    session_key = request.session.session_key if hasattr(request, "session") else None
    return (
        "session:" + hashlib.sha256(session_key.encode()).hexdigest()[:32] if session_key else None
    )


def expired_before(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def idempotency_records_purge(*, now: dt.datetime) -> int:
    """Delete API and form keys older than IDEMPOTENCY_KEY_HOURS
    (the daily job). Returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=expired_before(now)).delete()
    return deleted


def new_form_key() -> str:
    return uuid.uuid4().hex


def claim_form_key(*, user, key: str) -> bool:
    """True the first time `key` is claimed for this user; False on a repeat."""
    if not key or len(key) > 255:
        return True  # an old form without a key: nothing to deduplicate against
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                scope=f"form:{user.pk}",
                key=key,
                request_hash="",
                status_code=0,
                content_type="",
                body=b"",
                created_at=clock.now(),
            )
    except IntegrityError:
        return False
    return True
