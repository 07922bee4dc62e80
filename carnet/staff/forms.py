from django import forms
from django.contrib.auth import authenticate, get_user_model


class LoginForm(forms.Form):
    login = forms.CharField(label="Username or email", max_length=150,
                            widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}))
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))

    def __init__(self, request, *args, kind: str = "staff", **kwargs):
        self.request, self.kind, self.user = request, kind, None
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
        user = authenticate(self.request, username=username, password=password)
        # Staff and patients have separate doors; the wrong door answers like a wrong password.
        if user is None or not hasattr(user, self.kind) or not user.is_active:
            raise forms.ValidationError(
                "That login and password do not match. Check both and try again; "
                "after 5 failed tries the account is locked for 15 minutes."
            )
        self.user = user
        return self.cleaned_data


class PasswordResetRequestForm(forms.Form):
    email = forms.EmailField(label="Your email address", max_length=254,
                             widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))


_NEW = {"autocomplete": "new-password"}
_RULES = "At least 12 characters; not a common password, and not like your name or email."


class SetPasswordForm(forms.Form):
    password = forms.CharField(label="New password", strip=False, help_text=_RULES,
                               widget=forms.PasswordInput(attrs=_NEW))
    confirm = forms.CharField(label="New password again", strip=False, widget=forms.PasswordInput(attrs=_NEW))


class PasswordChangeForm(SetPasswordForm):
    current_password = forms.CharField(label="Current password", strip=False,
                                       widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    field_order = ("current_password", "password", "confirm")
