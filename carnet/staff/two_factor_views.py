"""Two-factor pages for both doors (people.two_factor): the code asked after the password, and the
set-up page (authenticator QR code, recovery codes, turn off). The portal's are the same views with
door="portal" (portal/views.py)."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django_otp import login as otp_login

from carnet.core.errors import CarnetError
from carnet.core.pages import apply_errors, staff_required
from carnet.core.permissions import Action
from carnet.people import two_factor

from .middleware import NO_SECOND_FACTOR
from .views import safe_next


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=40,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "text",
                "autofocus": True,
                "spellcheck": "false",
            }
        ),
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
    )
    remember = forms.BooleanField(
        label="Remember this browser",
        required=False,
        help_text=f"Skip the code here for {settings.TWO_FACTOR_REMEMBER_DAYS} days. "
        "Only on a computer or phone that is yours alone.",
    )


class EnrolForm(forms.Form):
    code = forms.CharField(
        label="Code from the app",
        max_length=10,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false"}
        ),
    )


class PasswordForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


def _home(door: str) -> str:
    return "staff:dashboard" if door == "staff" else "portal:home"


def _next(request, door: str) -> str:
    return safe_next(request, default=_home(door))


def verify_page(request, *, door: str):
    """After the password: the authenticator's code or a recovery code. Nothing else is reachable
    until it is given (middleware.TwoFactorMiddleware)."""
    if not request.user.is_authenticated:
        return redirect(f"{door}:login")
    if request.user.is_verified() or two_factor.authenticator(request.user) is None:
        return redirect(_next(request, door))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device = two_factor.two_factor_check(user=request.user, code=form.cleaned_data["code"])
        except CarnetError as exc:
            apply_errors(form, exc)
        else:
            if device is None:
                form.add_error(
                    "code",
                    "That code is not right. Type the code your app shows now, or a recovery "
                    "code; each wrong try makes the next one wait a little longer.",
                )
            else:
                request.session.cycle_key()  # a new session id once fully logged in
                otp_login(request, device)
                response = redirect(_next(request, door))
                if form.cleaned_data["remember"]:
                    totp = two_factor.authenticator(request.user)
                    response.set_cookie(
                        two_factor.REMEMBER_COOKIE,
                        two_factor.remember_cookie_value(request.user, totp),
                        max_age=settings.TWO_FACTOR_REMEMBER_DAYS * 86400,
                        httponly=True,
                        samesite="Lax",
                        secure=settings.SESSION_COOKIE_SECURE,
                    )
                if device.persistent_id.startswith("otp_static"):
                    left = two_factor.recovery_codes_left(request.user)
                    messages.warning(
                        request,
                        f"You used a recovery code; {left} left. Make new ones on your "
                        "Two-factor page if you are running low.",
                    )
                return response
    return render(
        request,
        "staff/two_factor_verify.html",
        {"form": form, "door": door, "next": request.GET.get("next", "")},
    )


def settings_page(request, *, door: str, context: dict | None = None):
    """Set up an authenticator app (QR code, then a code from it),
    see or renew recovery codes, turn off."""
    user = request.user
    device = two_factor.authenticator(user)
    ctx = {"door": door, "required": two_factor.two_factor_required(user), **(context or {})}
    action = request.POST.get("action", "")
    if device is None:
        pending = two_factor.enrolment_device(user)
        form = EnrolForm(request.POST if action == "enrol" else None)
        if action == "enrol" and form.is_valid():
            try:
                codes = two_factor.two_factor_enrol(
                    user=user, device=pending, code=form.cleaned_data["code"]
                )
            except CarnetError as exc:
                apply_errors(form, exc)
            else:
                request.session.pop(NO_SECOND_FACTOR, None)
                request.session.cycle_key()
                pending.refresh_from_db()
                otp_login(request, pending)
                return render(
                    request,
                    "staff/two_factor_codes.html",
                    {**ctx, "codes": codes, "new": True, "next": _next(request, door)},
                )
        return render(
            request,
            "staff/two_factor.html",
            {
                **ctx,
                "form": form,
                "qr": two_factor.qr_svg(pending),
                "secret": two_factor.secret_text(pending),
                "next": request.GET.get("next", ""),
            },
        )
    if action == "codes":
        codes = two_factor.recovery_codes_renew(user=user)
        return render(
            request,
            "staff/two_factor_codes.html",
            {**ctx, "codes": codes, "new": False, "next": _next(request, door)},
        )
    off = PasswordForm(request.POST if action == "disable" else None)
    if action == "disable" and off.is_valid():
        try:
            two_factor.two_factor_disable(user=user, password=off.cleaned_data["password"])
        except CarnetError as exc:
            apply_errors(off, exc)
        else:
            messages.success(
                request, "Two-factor log-in is off. Your password alone now logs you in."
            )
            return redirect(f"{door}:two_factor")
    return render(
        request,
        "staff/two_factor.html",
        {**ctx, "device": device, "codes_left": two_factor.recovery_codes_left(user), "off": off},
    )


def verify(request):
    return verify_page(request, door="staff")


@staff_required(Action.ACCOUNT_OWN)
def settings_view(request):
    return settings_page(request, door="staff")
