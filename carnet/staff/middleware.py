"""Session rules: a login whose password fails today's rules stays on the change page until it picks
a new one; a session ends a fixed time after its log-in."""

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse

from carnet.core.middleware import problem_response
from carnet.core.permissions import staff_of
from carnet.core.token_calls import token_call

from .account_views import CHANGE_REQUIRED

LOGGED_IN_AT = "carnet_logged_in_at"  # seconds since the epoch, set at the session's first request
# Your sessions (people.login_sessions): this session's row,
# the session key it was written with, and when.
LOGIN_SESSION_ID = "carnet_login_session"
LOGIN_SESSION_KEY = "carnet_login_session_key"
LOGIN_SESSION_TOUCHED = "carnet_login_session_touched"
LOGIN_SESSION_TOUCH_SECONDS = 60
# This session's login needed no second factor when first checked
# (people.two_factor): not asked again.
NO_SECOND_FACTOR = "carnet_no_second_factor"


class PasswordChangeRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if token_call(request):
            return self.get_response(request)
        if request.user.is_authenticated and request.session.get(CHANGE_REQUIRED):
            is_patient = getattr(request.user, "patient", None) is not None
            change = reverse("portal:password_change" if is_patient else "staff:password_change")
            if request.path not in (change, reverse("staff:logout")):
                if request.path.startswith("/api/"):
                    return problem_response(
                        403,
                        "password_change_required",
                        "Password change required",
                        "Your password no longer meets the clinic's rules. Change it on "
                        f"{change} before using the API with this session.",
                    )
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
        if token_call(request):
            return self.get_response(request)
        if request.user.is_authenticated:
            now = time.time()
            started = request.session.setdefault(LOGGED_IN_AT, now)
            if now - started > settings.SESSION_MAX_HOURS * 3600:
                is_patient = getattr(request.user, "patient", None) is not None
                logout(request)
                detail = (
                    f"Your session ended {settings.SESSION_MAX_HOURS} hours after you logged in. "
                    "Log in again to continue."
                )
                if request.path.startswith("/api/"):
                    return problem_response(401, "session_expired", "Session expired", detail)
                messages.info(request, detail)
                return redirect(
                    f"{reverse('portal:login' if is_patient else 'staff:login')}"
                    f"?next={request.path}"
                )
        return self.get_response(request)


class TwoFactorMiddleware:
    """After the password, a login with an authenticator (or one that must have one) is held on the
    code page (or the set-up page) until a code is given; its session reaches nothing else, pages or
    API (403 `second_factor_required`). Runs after django-otp's OTPMiddleware, which marks a
    verified session. An API call with `Authorization: Bearer` is the token's, never the session's
    (carnet.api), so it is let through to the token check."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if token_call(request):
            return self.get_response(request)
        if (
            settings.TWO_FACTOR_ENFORCED
            and request.user.is_authenticated
            and not request.user.is_verified()
        ):
            step = self._step(request)
            held = self._hold(request, *step) if step is not None else None
            if held is not None:
                return held
        return self.get_response(request)

    @staticmethod
    def _step(request):
        from carnet.people.two_factor import (
            authenticator,
            two_factor_required,
        )  # after the app registry

        user = request.user
        if request.session.get(NO_SECOND_FACTOR) == user.pk:
            return None
        door = (
            "portal"
            if staff_of(user) is None and getattr(user, "patient", None) is not None
            else "staff"
        )
        if authenticator(user) is not None:
            return door, "two_factor_verify"
        if door == "staff" and two_factor_required(user):
            return door, "two_factor"
        # Checked once per session: a login that later turns it on is verified by doing so.
        request.session[NO_SECOND_FACTOR] = user.pk
        return None

    @staticmethod
    def _hold(request, door: str, name: str):
        target = reverse(f"{door}:{name}")
        if request.path in (
            target,
            reverse("staff:logout"),
            reverse("staff:login"),
            reverse("portal:login"),
        ):
            return None
        if request.path.startswith("/api/"):
            return problem_response(
                403,
                "second_factor_required",
                "Second factor required",
                "This session has not given its two-factor code yet. Log in on the web "
                f"page ({target}) first, or use an API token.",
            )
        return redirect(f"{target}?{urlencode({'next': request.get_full_path()})}")


class LoginSessionMiddleware:
    """Keeps this session's row on "Your sessions" up to date (IP, browser, last active), writing at
    most once a minute or when the session's key changes (a log-in step),
    so most requests cost no query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if token_call(request):
            return self.get_response(request)
        if request.user.is_authenticated and request.session.session_key:
            from carnet.people.login_sessions import login_session_touch  # after the app registry

            session, now = request.session, time.time()
            if (
                session.get(LOGIN_SESSION_KEY) != session.session_key
                or now - session.get(LOGIN_SESSION_TOUCHED, 0) > LOGIN_SESSION_TOUCH_SECONDS
            ):
                session[LOGIN_SESSION_ID] = login_session_touch(
                    user=request.user,
                    session_key=session.session_key,
                    row_id=session.get(LOGIN_SESSION_ID),
                    ip=request.META.get("REMOTE_ADDR"),
                    user_agent=request.META.get("HTTP_USER_AGENT", ""),
                )
                session[LOGIN_SESSION_KEY], session[LOGIN_SESSION_TOUCHED] = (
                    session.session_key,
                    now,
                )
        return self.get_response(request)
