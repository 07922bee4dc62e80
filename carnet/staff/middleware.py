"""Keeps a login whose password fails today's rules on the change page until it picks a new one."""

from django.shortcuts import redirect
from django.urls import reverse

from carnet.core.middleware import problem_response

from .account_views import CHANGE_REQUIRED


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
