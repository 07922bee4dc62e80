from django import forms
from django.contrib.auth import authenticate, get_user_model

from carnet.people import login_throttle


class LoginForm(forms.Form):
    login = forms.CharField(
        label="Username or email",
        max_length=150,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, request, *args, kind: str = "staff", **kwargs):
        self.request, self.kind, self.user, self.wait = request, kind, None, None
        super().__init__(*args, **kwargs)

    def clean(self):
        login = self.cleaned_data.get("login", "").strip()
        password = self.cleaned_data.get("password")
        if not login or not password:
            return self.cleaned_data
        username = login
        if "@" in login:
            match = get_user_model().objects.filter(email__iexact=login).order_by("pk").first()
            username = match.username if match else login
        known = get_user_model().objects.filter(username__iexact=username).first()
        attempt = login_throttle.Attempt(
            username=(known.username if known else username).lower(),
            ip=self.request.META.get("REMOTE_ADDR"),
            trusted_device=known is not None
            and known.pk
            in login_throttle.device_trusted_users(
                self.request.COOKIES.get(login_throttle.DEVICE_COOKIE)
            ),
        )
        wait = login_throttle.login_wait(attempt)
        if wait:  # the password is not checked, and this try does not count
            self.wait = wait
            minutes = -(-int(wait.total_seconds()) // 60)
            raise forms.ValidationError(
                f"Too many failed log-ins. Wait {minutes} minute{'s' if minutes != 1 else ''} and "
                "try again, or use “Forgotten your password?” below."
            )
        user = authenticate(self.request, username=username, password=password)
        # Staff and patients have separate doors; the wrong door answers like a wrong password.
        if user is None or not hasattr(user, self.kind) or not user.is_active:
            login_throttle.login_failure_record(attempt)
            raise forms.ValidationError(
                "That login and password do not match. Check both and try again; "
                "after 5 failed tries each new try waits a little longer (15 minutes at most)."
            )
        login_throttle.login_failures_clear(username=user.username)
        self.user = user
        return self.cleaned_data


class PasswordResetRequestForm(forms.Form):
    email = forms.EmailField(
        label="Your email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )


_NEW = {"autocomplete": "new-password"}
_RULES = "At least 12 characters; not a common password, and not like your name or email."


class SetPasswordForm(forms.Form):
    password = forms.CharField(
        label="New password", strip=False, help_text=_RULES, widget=forms.PasswordInput(attrs=_NEW)
    )
    confirm = forms.CharField(
        label="New password again", strip=False, widget=forms.PasswordInput(attrs=_NEW)
    )


class PasswordChangeForm(SetPasswordForm):
    current_password = forms.CharField(
        label="Current password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    field_order = ("current_password", "password", "confirm")
