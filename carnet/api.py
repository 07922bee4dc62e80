"""The JSON API: one NinjaAPI, session or token auth, errors as RFC 9457 problem details."""

import datetime
import logging
import re

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import Http404
from django.shortcuts import render
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, django_auth

from carnet.core import clock
from carnet.core.errors import CarnetError, is_contention
from carnet.core.middleware import ID_TOO_LARGE, body_too_large_response, problem_response
from carnet.people.models import ApiToken
from carnet.people.selectors import api_token_for_request

log = logging.getLogger(__name__)
TOKEN_TOUCH_EVERY = datetime.timedelta(minutes=1)


class TokenAuth(HttpBearer):
    """`Authorization: Bearer crn_…` — a staff member's API token."""

    def authenticate(self, request, token):
        found = api_token_for_request(request, token)
        if found is None:
            # A wrong token is a 401, not a fall-through to the session (whose CSRF check says 403).
            raise AuthenticationError()
        now = clock.now()
        if found.last_used_at is None or now - found.last_used_at > TOKEN_TOUCH_EVERY:
            # After commit, and at most once a minute: inside a write's transaction this row lock
            # would stall every other request made with the same token until that write commits.
            transaction.on_commit(
                lambda: ApiToken.objects.filter(pk=found.pk).update(last_used_at=now)
            )
        request.user = found.staff.user
        return found.staff.user


class VendoredSwagger(Swagger):
    """The docs page from Carnet's vendored Swagger UI (carnet/static/vendor/), never a CDN, and
    with no inline script, so it works under Carnet's Content-Security-Policy.

    The page and the OpenAPI document are public on purpose: they describe what the open-source code
    already shows and hold no clinic's data, and an integrator reads them before having a token.
    Every operation they list still checks its caller."""

    def render_page(self, request, api, **kwargs):
        settings = {**self.settings, "url": self.get_openapi_url(api, kwargs)}
        return render(
            request,
            "api/docs.html",
            {"api": api, "swagger_settings": settings, "add_csrf": request.user.is_authenticated},
        )


def descriptions_unwrapped(node):
    """Descriptions with their source line breaks joined (a paragraph break stays): the document
    says the same whatever width the docstrings are wrapped at, as Markdown reads it anyway."""
    if isinstance(node, dict):
        return {
            key: re.sub(r"(?<!\n)\n(?!\n)", " ", value)
            if key == "description" and isinstance(value, str)
            else descriptions_unwrapped(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [descriptions_unwrapped(value) for value in node]
    return node


class CarnetAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        return descriptions_unwrapped(super().get_openapi_schema(*args, **kwargs))


api = CarnetAPI(
    docs=VendoredSwagger(),
    title="Carnet API",
    version="1",
    urls_namespace="api",
    auth=[TokenAuth(), django_auth],
    description=(
        "Carnet's JSON API. Authenticate with the session cookie (plus the CSRF token) or "
        "`Authorization: Bearer <token>`. Money is integer minor units of the clinic currency "
        "(`price_minor: 1250` is 12.50). POSTs that create something or move money accept an "
        "`Idempotency-Key` header, scoped to the user who sends it (token or session alike): "
        "a retry with the same key, address, query string and body returns the first response; "
        "the same key with another request is a 409. Card charges and refunds require a key (400 "
        "`idempotency_key_required`). Keys are kept `IDEMPOTENCY_KEY_HOURS` (default 72). "
        "Errors are RFC 9457 problem details with a stable `code`."
    ),
)


@api.exception_handler(CarnetError)
def _domain_error(request, exc: CarnetError):
    extra = (
        {"errors": [{"field": f, "message": m} for f, ms in exc.fields.items() for m in ms]}
        if exc.fields
        else {}
    )
    return problem_response(exc.status, exc.code, exc.__class__.__name__, exc.message, **extra)


def _field(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "payload", "query", "path")]
    return ".".join(parts) or "body"


@api.exception_handler(NinjaValidationError)
def _validation_error(request, exc: NinjaValidationError):
    errors = [
        {
            "field": _field(e.get("loc", [])),
            "message": e.get("msg", "Invalid value.").removeprefix("Value error, "),
        }
        for e in exc.errors
    ]
    first = errors[0] if errors else {"field": "body", "message": "Invalid request."}
    return problem_response(
        422,
        "invalid",
        "Invalid request",
        f"Please correct {first['field']}: {first['message']}",
        errors=errors,
    )


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return problem_response(
        401,
        "not_authenticated",
        "Not authenticated",
        "Log in, or send a valid API token as `Authorization: Bearer <token>`.",
    )


@api.exception_handler(Http404)
def _not_found(request, exc):
    return problem_response(
        404, "not_found", "Not found", str(exc) or "Nothing is at this address."
    )


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return problem_response(exc.status_code, "http_error", "Request refused", str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return body_too_large_response()


@api.exception_handler(Exception)
def _unexpected(request, exc):
    if is_contention(exc):
        log.warning("API request gave way to another on the database: %s", exc)
        response = problem_response(
            503,
            "busy",
            "Try again",
            "Another request was changing the same records at the same moment; "
            "nothing was changed. Send the request again (with the same Idempotency-Key, "
            "if it had one).",
        )
        response["Retry-After"] = "1"
        response.contention = (
            True  # the idempotency middleware runs a keyed request again by itself
        )
        return response
    if isinstance(exc, OverflowError):
        return problem_response(404, "not_found", "Not found", ID_TOO_LARGE)
    log.exception("Unexpected API error")
    return problem_response(
        500,
        "internal_error",
        "Internal error",
        "Something went wrong on our side; nothing was changed. Please try again.",
    )


from carnet.billing.api import router as billing_router  # noqa: E402
from carnet.clinic.api import router as clinic_router  # noqa: E402
from carnet.giftcards.api import router as giftcards_router  # noqa: E402
from carnet.people.api import router as people_router  # noqa: E402

api.add_router("/", clinic_router)
api.add_router("/", people_router)
api.add_router("/", billing_router)
api.add_router("/", giftcards_router)

from carnet.scheduling.api import router as scheduling_router  # noqa: E402
from carnet.scheduling.online_api import router as online_booking_router  # noqa: E402

api.add_router("/", scheduling_router)
api.add_router("/", online_booking_router)

from carnet.passes.setup.api import router as pass_templates_router  # noqa: E402

api.add_router("/pass-templates", pass_templates_router)

from carnet.passes.packages.api import router as passes_router  # noqa: E402

api.add_router("/", passes_router)

from carnet.passes.redeeming.api import router as redeeming_router  # noqa: E402

api.add_router("/", redeeming_router)

from carnet.reports.billing_api import router as billing_reports_router  # noqa: E402

api.add_router("/", billing_reports_router)

from carnet.reports.pass_api import router as pass_reports_router  # noqa: E402

api.add_router("/reports", pass_reports_router)

from carnet.passes.memberships.api import router as memberships_router  # noqa: E402

api.add_router("/", memberships_router)

from carnet.passes.api import router as pass_router  # noqa: E402

api.add_router("/", pass_router)
