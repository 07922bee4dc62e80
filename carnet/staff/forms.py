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
