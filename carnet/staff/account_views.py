"""Password pages for both doors: forgotten password (reset by email) and change when logged in.

The staff pages live here; the portal's are the same views with kind="patient" (portal/views.py),
so the two doors behave alike and never serve each other's logins.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.shortcuts import redirect, render

from carnet.core.errors import CarnetError
from carnet.core.pages import apply_errors, staff_required
from carnet.core.permissions import Action
from carnet.people import passwords

from .forms import PasswordChangeForm, PasswordResetRequestForm, SetPasswordForm

# Set at log-in when the password that was typed fails today's rules;
# PasswordChangeRequiredMiddleware keeps the login on the change page until it has a new one.
CHANGE_REQUIRED = "carnet_password_change_required"


def _door(kind: str) -> dict:
    ns = "staff" if kind == "staff" else "portal"
    return {
        "kind": kind,
        "login_url": f"{ns}:login",
        "reset_url": f"{ns}:password_reset",
        "change_url": f"{ns}:password_change",
        "home_url": "staff:dashboard" if kind == "staff" else "portal:home",
    }


def password_reset(request, *, kind: str = "staff"):
    """Ask for a reset link. The answer is the same whether or not the address has an account."""
    form = PasswordResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        passwords.password_reset_request(
            email=form.cleaned_data["email"],
            kind=kind,
            base_url=settings.SITE_URL or request.build_absolute_uri("/"),
        )
        return render(
            request,
            "staff/password_reset_sent.html",
            {**_door(kind), "hours": settings.PASSWORD_RESET_TIMEOUT // 3600},
        )
    return render(request, "staff/password_reset.html", {**_door(kind), "form": form})


def password_reset_confirm(request, token: str, *, kind: str = "staff"):
    """The link from the email: choose a new password. A used, tampered or old link says so."""
    try:
        passwords.account_link_user(
            token=token,
            purpose=passwords.RESET,
            kind=kind,
            max_age_seconds=settings.PASSWORD_RESET_TIMEOUT,
        )
    except CarnetError as exc:
        return render(
            request,
            "staff/link_invalid.html",
            {**_door(kind), "message": exc.message},
            status=exc.status,
        )
    form = SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            passwords.password_reset_complete(
                token=token,
                kind=kind,
                password=form.cleaned_data["password"],
                confirm=form.cleaned_data["confirm"],
            )
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            messages.success(
                request,
                "Your password is changed and every session of your account has ended. "
                "Log in with the new password.",
            )
            return redirect(_door(kind)["login_url"])
    return render(request, "staff/password_reset_confirm.html", {**_door(kind), "form": form})


def password_change_page(request, *, kind: str, user, context: dict | None = None):
    form = PasswordChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            passwords.password_change(
                user=user,
                current=form.cleaned_data["current_password"],
                password=form.cleaned_data["password"],
                confirm=form.cleaned_data["confirm"],
            )
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            update_session_auth_hash(request, user)  # this session stays; the others end
            request.session.pop(CHANGE_REQUIRED, None)
            messages.success(request, "Your password is changed. Your other sessions have ended.")
            return redirect(_door(kind)["home_url"])
    return render(
        request,
        "staff/password_change.html",
        {
            **_door(kind),
            **(context or {}),
            "form": form,
            "required": request.session.get(CHANGE_REQUIRED, False),
        },
    )


@staff_required(Action.ACCOUNT_OWN)
def password_change(request):
    return password_change_page(request, kind="staff", user=request.user)
