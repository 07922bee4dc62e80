"""Passwords people can trust (SPEC 14): reset by email, change when logged in, account links.

An account link (password reset, portal invitation) is signed and expires; it also carries a
digest of the login's state (password hash, last login, email), so it works once: setting the
password changes the state and every earlier link of that login stops working.

Ending every session on a new password needs no bookkeeping: Django keeps a digest of the
password hash in each session and ends, at its next request, any session whose digest no longer
matches (django.contrib.auth.get_user). Password change keeps the changer's own session
(update_session_auth_hash in the view).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils.crypto import salted_hmac

from carnet.clinic.selectors import clinic_get
from carnet.core import activity
from carnet.core.errors import CarnetError, ValidationFailed
from carnet.core.mail import mail_queue
from carnet.core.permissions import staff_of
from carnet.core.signed_links import ClockSigner

from .login_throttle import login_failures_clear
from .services import password_validate

User = get_user_model()

RESET = "carnet.people.password_reset"
KINDS = ("staff", "patient")


class AccountLinkInvalid(CarnetError):
    status = 400
    code = "link_invalid"


class AccountLinkExpired(CarnetError):
    status = 410
    code = "link_expired"


def is_kind(user, kind: str) -> bool:
    """Staff and patients have separate doors: a link or a form of one door ignores
    the other's logins."""
    if not user.is_active:
        return False
    if kind == "staff":
        return staff_of(user) is not None
    return getattr(user, "patient", None) is not None


def link_digest(purpose: str, *parts) -> str:
    return salted_hmac(purpose, "|".join(str(p) for p in parts)).hexdigest()[:24]


def _state(user, purpose: str) -> str:
    last_login = user.last_login.replace(microsecond=0).isoformat() if user.last_login else ""
    return link_digest(purpose, user.pk, user.password, last_login, user.email)


def account_link_token(*, user, purpose: str) -> str:
    return ClockSigner(salt=purpose).sign(f"{user.pk}.{_state(user, purpose)}")


def link_read(*, token: str, purpose: str) -> tuple[int, str, float]:
    """(the id, the state digest, the age in seconds) a signed account link carries;
    AccountLinkInvalid if tampered."""
    try:
        value, age = ClockSigner(salt=purpose).unsign_age(token)
        pk, state = value.split(".", 1)
        return int(pk), state, age
    except (signing.BadSignature, ValueError):
        raise AccountLinkInvalid(
            "This link is not valid. Check that you used the whole link from the email, "
            "or ask for a new one."
        ) from None


def link_check(*, matches: bool, age: float, max_age_seconds: int) -> None:
    """A link whose digest no longer matches was used (or its account changed);
    an old one expired."""
    if not matches:
        raise AccountLinkInvalid(
            "This link has already been used or is no longer valid. Ask for a new one."
        )
    if age > max_age_seconds:
        if max_age_seconds >= 2 * 86400:
            span = f"{max_age_seconds // 86400} days"
        else:
            hours = max_age_seconds // 3600
            span = f"{hours} hour{'s' if hours != 1 else ''}"
        raise AccountLinkExpired(
            f"This link has expired (links work for {span}). Ask for a new one."
        )


def account_link_user(
    *, token: str, purpose: str, kind: str, max_age_seconds: int, lock: bool = False
):
    """The login an account link was made for; AccountLinkInvalid (tampered, used, other door) or
    AccountLinkExpired. With `lock`, the login's row is locked (inside the caller's transaction)
    so that two submits of one link cannot both use it."""
    pk, state, age = link_read(token=token, purpose=purpose)
    qs = User.objects.filter(pk=pk)
    user = (qs.select_for_update() if lock else qs).first()
    link_check(
        matches=user is not None and is_kind(user, kind) and state == _state(user, purpose),
        age=age,
        max_age_seconds=max_age_seconds,
    )
    return user


def _confirm_url(kind: str, name: str) -> str:
    return reverse(f"{'staff' if kind == 'staff' else 'portal'}:{name}", kwargs={"token": "TOKEN"})


@transaction.atomic
def password_reset_request(*, email: str, kind: str, base_url: str) -> None:
    """Email a reset link to each active login of that door with this email address.

    Whether or not one exists, the caller answers the same, so the form cannot tell anyone
    which addresses have an account. The email is queued with this transaction."""
    email = (email or "").strip()
    if not email:
        raise ValidationFailed(
            "Please enter your email address.", fields={"email": ["This field is required."]}
        )
    clinic = clinic_get()
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    for user in User.objects.filter(email__iexact=email, is_active=True).order_by("pk"):
        if not is_kind(user, kind):
            continue
        token = account_link_token(user=user, purpose=RESET)
        link = base_url.rstrip("/") + _confirm_url(kind, "password_reset_confirm").replace(
            "TOKEN", token
        )
        mail_queue(
            to=user.email,
            subject=f"Reset your password at {clinic.name}",
            reply_to=clinic.email,
            template="people/email/password_reset.txt",
            context={"user": user, "clinic": clinic, "link": link, "hours": hours},
        )
        activity.record(actor=None, verb="password_reset_requested", obj=user)


@transaction.atomic
def password_reset_complete(*, token: str, kind: str, password: str, confirm: str):
    """Set the password from a reset link: the link then stops working and every session ends."""
    user = account_link_user(
        token=token,
        purpose=RESET,
        kind=kind,
        max_age_seconds=settings.PASSWORD_RESET_TIMEOUT,
        lock=True,
    )
    _set_password(user, password, confirm)
    login_failures_clear(username=user.username)
    activity.record(actor=user, verb="password_reset", obj=user)
    return user


@transaction.atomic
def password_change(*, user, current: str, password: str, confirm: str):
    """A logged-in user changes their password; the current one is required. Other sessions end."""
    if not user.check_password(current or ""):
        raise ValidationFailed(
            "Your current password is not right; type it again.",
            fields={"current_password": ["This is not your current password."]},
        )
    if current == password:
        raise ValidationFailed(
            "Please choose a password different from your current one.",
            fields={"password": ["This is your current password."]},
        )
    _set_password(user, password, confirm)
    activity.record(actor=user, verb="password_changed", obj=user)
    return user


def passwords_match(password: str, confirm: str) -> None:
    if password != confirm:
        raise ValidationFailed(
            "The two passwords are not the same; type the new one twice.",
            fields={"confirm": ["Not the same as the password above."]},
        )


def _set_password(user, password: str, confirm: str) -> None:
    passwords_match(password, confirm)
    password_validate(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])


def password_meets_rules(*, user, password: str) -> bool:
    """Does a password that just logged in still meet today's rules?
    (Older ones may not: SPEC 14.)"""
    try:
        password_validate(password, user)
    except ValidationFailed:
        return False
    return True
