"""Bearer-token API calls skip Django's session-based middleware (issue 25).

A call with `Authorization: Bearer` is the token's alone (carnet.api): its user is the token's,
set by the API's TokenAuth, and it reads no session or message store, so the middleware that loads
and saves those passes it straight through. Everything else goes through them as Django ships
them. Settings list these classes in place of Django's own. (Django's CSRF middleware stays as it
is, for every request: `check --deploy` looks for it by name, and the API's views are exempt.)
"""

from __future__ import annotations

from django.contrib.auth.middleware import AuthenticationMiddleware as _Authentication
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.middleware import MessageMiddleware as _Messages
from django.contrib.sessions.middleware import SessionMiddleware as _Session
from django_otp.middleware import OTPMiddleware as _Otp

_MARK = "_carnet_token_call"


def token_call(request) -> bool:
    """`Authorization: Bearer` on an API path: worked out once per request."""
    known = request.__dict__.get(_MARK)
    if known is None:
        known = request.path.startswith("/api/") and request.META.get(
            "HTTP_AUTHORIZATION", ""
        ).lower().startswith("bearer ")
        setattr(request, _MARK, known)
    return known


def _unless_token_call(middleware: type, *, anonymous: bool = False) -> type:
    """`middleware` for every request but a token call, which goes straight on. A subclass, so
    Django's checks still find the middleware they look for. `anonymous`: a token call starts as
    the anonymous user until the token's authentication names its own."""

    class Skipping(middleware):
        __doc__ = f"{middleware.__module__}.{middleware.__name__}, but not on token calls."

        def __call__(self, request):
            if token_call(request):
                if anonymous:
                    request.user = AnonymousUser()
                return self.get_response(request)
            return super().__call__(request)

    Skipping.__name__ = Skipping.__qualname__ = middleware.__name__
    return Skipping


SessionMiddleware = _unless_token_call(_Session)
AuthenticationMiddleware = _unless_token_call(_Authentication, anonymous=True)
OTPMiddleware = _unless_token_call(_Otp)
MessageMiddleware = _unless_token_call(_Messages)
