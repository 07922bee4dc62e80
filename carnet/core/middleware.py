"""Security headers and Idempotency-Key handling for the JSON API."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control

from . import activity, atomic, clock, idempotency, statements
from .errors import CarnetError, is_contention
from .models import IdempotencyRecord

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        # Pages, PDFs, exports and API answers carry patients' data and money: no browser or proxy
        # keeps a copy (the back button after log-out, a shared computer). Static files are served
        # by WhiteNoise before this point and stay cacheable.
        patch_cache_control(response, no_store=True)
        return response


def problem_response(status: int, code: str, title: str, detail: str, **extra) -> HttpResponse:
    body = {
        "type": f"urn:carnet:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return HttpResponse(json.dumps(body), status=status, content_type="application/problem+json")


def body_too_large_response() -> HttpResponse:

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024
    return problem_response(
        413,
        "body_too_large",
        "Request body too large",
        f"The request body is over {limit} KB, the most Carnet accepts; send less at a time.",
    )


# Responses that say nothing about the operation itself are not stored, so a retry re-runs; a 308
# (a renamed path, core.moved) sends the same request, with its key, to the new address.
_NOT_STORED = {308, 401, 403, 429}
# A keyed API request the database aborted for another's sake runs again at most this many times.
_CONTENTION_RETRIES = 2

# The key's record with its answer, one statement once the work is done (both databases quote with
# double quotes and know ON CONFLICT … DO NOTHING RETURNING).
_INSERT_SQL = (
    'INSERT INTO "core_idempotencyrecord" ("scope", "key", "request_hash", "status_code", '
    '"content_type", "body", "secret_withheld", "created_at") VALUES (%s, %s, %s, %s, %s, %s, %s, '
    '%s) ON CONFLICT ("scope", "key") DO NOTHING RETURNING "id"'
)


class IdempotencyMiddleware:
    """POST /api/… with an Idempotency-Key runs once per key and per caller.

    The caller is who authenticated — the user behind a bearer token (whatever the spelling of
    the header) or behind the session, so a token and a session of one user share their keys —
    and the request is its method, path, query string and body. A key is remembered for
    IDEMPOTENCY_KEY_HOURS; after that it counts as new.

    The key's record, with the answer, is inserted in the same database transaction as the
    operation, after it: the two commit together or not at all, so a crash before commit leaves
    nothing and a retry runs again, and the busy path pays one statement for its key. A twin
    request with the same key meets the record at its own insert — on PostgreSQL the unique index
    makes it wait for the first one's commit; SQLite has one writer at a time — and its own work is
    rolled back with its transaction before it replays the stored answer. The insert is
    `ON CONFLICT DO NOTHING`, so a taken key needs no savepoint to recover from.
    The services of the busiest path join this transaction without savepoints (core.atomic): when
    one refuses after writing, the request is rolled back whole and its refusal (4xx) is then
    stored in a transaction of its own.
    A response its handler marked with idempotency.withhold_response() (it carries a secret, e.g. a
    new API token) keeps its key taken but its body is not stored: a retry is told so instead of
    seeing the secret again.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or key is None or not request.path.startswith("/api/"):
            return self.get_response(request)
        if not 1 <= len(key) <= 255:
            return problem_response(
                400,
                "idempotency_key_invalid",
                "Invalid Idempotency-Key",
                "The Idempotency-Key header must be 1 to 255 characters long.",
            )
        scope = idempotency.caller_scope(request)
        if (
            scope is None
        ):  # nobody to scope the key to: the API refuses the request itself (401, not stored)
            return self.get_response(request)
        request.idempotency_scope = (
            scope  # the handler's request_key() scopes the gateway's key the same way
        )
        try:
            body = request.body
        except RequestDataTooBig:
            return body_too_large_response()
        digest = hashlib.sha256(
            b"\n".join(
                [
                    request.method.encode(),
                    request.path.encode(),
                    request.META.get("QUERY_STRING", "").encode(),
                    body,
                ]
            )
        ).hexdigest()

        if idempotency.gateway_request(request, body):
            return self._outside_transaction(request, scope, key, digest)
        # The whole request is one transaction: when the database aborts it for another's sake (a
        # deadlock), nothing of it was written and it runs again, as the client's retry would.
        for retry in range(_CONTENTION_RETRIES + 1):
            response = self._in_transaction(request, scope, key, digest)
            if not getattr(response, "contention", False) or retry == _CONTENTION_RETRIES:
                return response
        return response

    def _in_transaction(self, request, scope: str, key: str, digest: str):
        # The activity rows of the request are held (activity.together) and, on PostgreSQL, go in
        # with its key's record: one statement; a refused or failed request's go with its rollback.
        with atomic.request(), activity.together():
            response = self.get_response(request)
            status = response.status_code
            if status >= 500 or status in _NOT_STORED:
                transaction.set_rollback(True)
                outcome = "failed"
            elif connection.needs_rollback and 400 <= status < 500:
                outcome = "refused"  # (a 2xx in a transaction marked for rollback fails here)
            elif self._claim(
                scope, key, digest, *self._answer(request, response), held=activity.held_unsent()
            ):
                return response
            else:
                # A twin request with this key committed first: this one's work is undone with
                # the transaction, and the twin's answer is the one.
                transaction.set_rollback(True)
                outcome = "taken"
        if outcome == "taken":
            return self._replay(scope, key, digest)
        if outcome == "failed":
            # Not kept, so a retry runs again. A twin request with the key may have finished
            # meanwhile (its unique row is what made this one fail): then its answer.
            if status >= 500 and self._live(scope, key).exists():
                return self._replay(scope, key, digest)
            return response
        # A service that joined this transaction (core.atomic) refused after writing: all of the
        # request was rolled back, and its refusal is kept for replay in a transaction of its own.
        # Another request with the key may have taken it meanwhile: then its answer is the one.
        with transaction.atomic():
            if self._claim(scope, key, digest, *self._answer(request, response)):
                return response
        return self._replay(scope, key, digest)

    @staticmethod
    def _answer(request, response) -> tuple[int, str, bytes, bool]:
        """What is kept for replay: status, content type, body, whether a secret was held back."""
        if getattr(request, "idempotency_withhold", False):
            return response.status_code, "", b"", True
        return (
            response.status_code,
            response.get("Content-Type", ""),
            bytes(response.content),
            False,
        )

    def _outside_transaction(self, request, scope: str, key: str, digest: str):
        """A card charge or refund: no transaction around the endpoint (it calls the gateway between
        its own commits, keyed by this request), then its answer is kept for replay."""
        done = self._live(scope, key).first()
        if done is not None and not (done.request_hash == digest and done.status_code == 0):
            # (A record of status 0 never finished, from before answers were kept with the key:
            # the endpoint finds its own attempt and answers again.)
            return self._replay(scope, key, digest)
        response = self.get_response(request)
        if response.status_code >= 500 or response.status_code in _NOT_STORED:
            return response
        with transaction.atomic():
            self._claim(scope, key, digest, *self._answer(request, response))
        return response

    @staticmethod
    def _live(scope: str, key: str):
        """The key's record, unless it has expired (then the key counts as new)."""
        return IdempotencyRecord.objects.filter(
            scope=scope, key=key, created_at__gte=idempotency.expired_before(clock.now())
        )

    @staticmethod
    def _claim(scope: str, key: str, digest: str, *answer, held=None) -> bool:
        """Keep the key's record with its answer, in the request's own transaction, after the work:
        one statement on the busy path, which also inserts the request's `held` activity rows (an
        INSERT and its parameters: activity.held_unsent) when there are. False when the key is
        taken — by an earlier request, or by a twin still running, whose commit or rollback the
        insert waits for (PostgreSQL's unique index; SQLite has one writer at a time): the
        request is then rolled back, its activity rows with it. An expired record is cleared only
        when the insert meets it."""
        now = clock.now()
        if IdempotencyMiddleware._insert(scope, key, digest, now, answer, held):
            return True
        return bool(
            IdempotencyRecord.objects.filter(
                scope=scope, key=key, created_at__lt=idempotency.expired_before(now)
            ).delete()[0]
        ) and IdempotencyMiddleware._insert(scope, key, digest, now, answer)

    @staticmethod
    def _insert(scope: str, key: str, digest: str, now, answer: tuple, held=None) -> bool:
        status_code, content_type, body, secret_withheld = answer
        # (A WITH's insert runs to its end whether or not the record's insert meets a conflict.)
        sql, params = (
            (_INSERT_SQL, [])
            if held is None
            else (f"WITH activity AS ({held[0]}) {_INSERT_SQL}", held[1])
        )
        cursor = statements.shared_cursor(connection)
        cursor.execute(
            sql,
            params
            + [
                scope,
                key,
                digest,
                status_code,
                content_type,
                body,
                secret_withheld,
                connection.ops.adapt_datetimefield_value(now),
            ],
        )
        return cursor.fetchone() is not None

    @staticmethod
    def _replay(scope: str, key: str, digest: str) -> HttpResponse:
        record = IdempotencyRecord.objects.get(scope=scope, key=key)
        if record.request_hash != digest:
            return problem_response(
                409,
                "idempotency_key_reused",
                "Idempotency-Key already used",
                "This Idempotency-Key was already used for a different request (another "
                "address, query string or body). Send a new key for a new request.",
            )
        if record.secret_withheld:
            return problem_response(
                409,
                "idempotency_secret_not_replayed",
                "Already done; the secret is not shown again",
                "The first request with this Idempotency-Key succeeded and its answer held a "
                "secret, which is shown only once and was not kept. If it was lost, "
                "revoke what was created and make a new one with a new key.",
            )
        response = HttpResponse(
            bytes(record.body), status=record.status_code, content_type=record.content_type
        )
        response["Idempotent-Replayed"] = "true"
        return response


class NullCharacterMiddleware:
    """A NUL in a query string or a submitted form (a search `q`, a payment reference) is refused
    with a 400 naming the field: PostgreSQL cannot store or even compare it (a 500 otherwise), and
    no person types one. JSON bodies are checked by the API schemas (carnet/core/schemas.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        data = [request.GET]
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            data.append(request.POST)
        for query in data:
            for name, values in query.lists():
                if "\x00" in name or any("\x00" in v for v in values):
                    shown = name.replace("\x00", "")
                    return self._refuse(
                        request, f"Please correct {shown}: null characters are not allowed."
                    )
        return self.get_response(request)

    @staticmethod
    def _refuse(request, message: str) -> HttpResponse:
        if request.path.startswith("/api/"):
            return problem_response(400, "null_character", "Invalid characters", message)

        return render(request, "error.html", {"message": message, "status": 400}, status=400)


# SQLite cannot even be asked about an integer beyond 64 bits (OverflowError); no record has such an
# id, so it is a 404 on both databases (PostgreSQL simply finds nothing).
ID_TOO_LARGE = "Nothing is at this address: a number in it is larger than any id Carnet gives."


class DomainErrorMiddleware:
    """A domain error escaping a page view becomes a page with its sentence, never a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):

        if request.path.startswith("/api/"):
            return None
        if isinstance(exception, CarnetError):
            return render(
                request,
                "error.html",
                {"message": exception.message, "status": exception.status},
                status=exception.status,
            )
        if is_contention(exception):
            response = render(
                request,
                "error.html",
                {
                    "status": 503,
                    "message": (
                        "Someone else was changing the same records at the same moment, "
                        "so nothing was saved. Go back and send the form again."
                    ),
                },
                status=503,
            )
            response["Retry-After"] = "1"
            return response
        if isinstance(exception, OverflowError):
            return render(
                request, "error.html", {"status": 404, "message": ID_TOO_LARGE}, status=404
            )
        return None
