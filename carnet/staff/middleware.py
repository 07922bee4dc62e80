"""Session rules: a login whose password fails today's rules stays on the change page until it picks a
new one; a session ends a fixed time after its log-in."""

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse

from carnet.core.middleware import problem_response

from .account_views import CHANGE_REQUIRED

LOGGED_IN_AT = "carnet_logged_in_at"  # seconds since the epoch, set at the session's first request


class PasswordChangeRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated and request.session.get(CHANGE_REQUIRED):
            is_patient = getattr(request.user, "patient", None) is not None
            change = reverse("portal:password_change" if is_patient else "staff:password_change")
            if request.path not in (change, reverse("staff:logout")):
                if request.path.startswith("/api/"):
                    return problem_response(403, "password_change_required", "Password change required",
                                            "Your password no longer meets the clinic's rules. Change it on "
                                            f"{change} before using the API with this session.")
                return redirect(change)
        return self.get_response(request)


class SessionLifetimeMiddleware:
    """Ends a session SESSION_MAX_HOURS after its log-in, however active it stays (SPEC 14; the idle
    timeout alone would let a session in constant use live for ever).

    Real time, not carnet's clock: like the idle expiry (Django's), it must not follow a test's
    frozen clock back and forth between requests."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = time.time()
            started = request.session.setdefault(LOGGED_IN_AT, now)
            if now - started > settings.SESSION_MAX_HOURS * 3600:
                is_patient = getattr(request.user, "patient", None) is not None
                logout(request)
                detail = (f"Your session ended {settings.SESSION_MAX_HOURS} hours after you logged in. "
                          "Log in again to continue.")
                if request.path.startswith("/api/"):
                    return problem_response(401, "session_expired", "Session expired", detail)
                messages.info(request, detail)
                return redirect(f"{reverse('portal:login' if is_patient else 'staff:login')}?next={request.path}")
        return self.get_response(request)
