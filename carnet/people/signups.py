"""Online sign-up without telling anyone which emails have an account (SPEC 14, issue 18 point 6).

The sign-up form answers "check your email" whatever the address. The email then says what fits:
to a new address, a signed link (SIGN_UP_LINK_HOURS) where the person chooses their password, which
creates the patient and their login; to an address that already has a login, a note that someone
tried to sign up with it, with a password reset link for a patient login. Only whoever reads the
mailbox learns which it was. The link carries the details typed in the form and where to go next
(the booking being confirmed), so nothing is stored until the address is proven.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import transaction
from django.urls import reverse

from carnet.clinic.selectors import clinic_get
from carnet.core import activity
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.limits import text_check
from carnet.core.mail import mail_queue
from carnet.core.signed_links import ClockSigner

from .models import Patient
from .passwords import (
    RESET,
    AccountLinkExpired,
    AccountLinkInvalid,
    account_link_token,
    is_kind,
    passwords_match,
)
from .services import email_check, patient_sign_up

User = get_user_model()
SIGN_UP = "carnet.people.sign_up"


def _max_age() -> int:
    return settings.SIGN_UP_LINK_HOURS * 3600


def _safe_next(next_url: str) -> str:
    # Only a path of this site (the booking being confirmed); never another host.
    return next_url if next_url.startswith("/") and not next_url.startswith("//") else ""


@transaction.atomic
def sign_up_request(
    *,
    first_name: str,
    last_name: str,
    email: str,
    phone: str = "",
    next_url: str = "",
    base_url: str,
) -> None:
    """Email the address a link to finish signing up, or, if it already has a
    login, tell its holder.

    The caller answers the same either way. The email is queued with this transaction."""
    names, email = _sign_up_checked(first_name, last_name, email)
    clinic = clinic_get()
    base = base_url.rstrip("/")
    existing = User.objects.filter(username__iexact=email).order_by("pk").first()
    if existing is not None:
        _tell_existing(existing, email, clinic, base)
        activity.record(actor=None, verb="sign_up_attempted", obj=existing)
        return
    payload = json.dumps(
        {**names, "email": email, "phone": phone.strip()[:40], "next": _safe_next(next_url)},
        separators=(",", ":"),
    )
    token = ClockSigner(salt=SIGN_UP).sign_object(payload, compress=True)
    mail_queue(
        to=email,
        subject=f"Finish signing up at {clinic.name}",
        reply_to=clinic.email,
        template="people/email/sign_up_confirm.txt",
        context={
            "first_name": names["first_name"],
            "clinic": clinic,
            "email": email,
            "link": base + reverse("portal:sign_up_confirm", kwargs={"token": token}),
            "hours": settings.SIGN_UP_LINK_HOURS,
            "booking": bool(_safe_next(next_url)),
        },
    )


def _sign_up_checked(first_name: str, last_name: str, email: str) -> tuple[dict, str]:
    """The names (both required) and the email (a valid address), trimmed; ValidationFailed else."""
    names = {"first_name": first_name.strip(), "last_name": last_name.strip()}
    problems = {k: ["This field is required."] for k, v in names.items() if not v}
    if problems:
        raise ValidationFailed("Please enter your first and last name.", fields=problems)
    for field, value in names.items():
        text_check(value, field=field, limit=Patient._meta.get_field(field).max_length)
    if not (email or "").strip():
        raise ValidationFailed(
            "Please enter your email; it is your login.",
            fields={"email": ["This field is required."]},
        )
    return names, email_check(email)


def _tell_existing(existing, email: str, clinic, base: str) -> None:
    """The address already has a login: tell its holder (with a reset link if it is a patient's)."""
    reset = ""
    if is_kind(existing, "patient"):
        token = account_link_token(user=existing, purpose=RESET)
        reset = base + reverse("portal:password_reset_confirm", kwargs={"token": token})
    mail_queue(
        to=existing.email or email,
        subject=f"Someone tried to sign up at {clinic.name} with your email",
        reply_to=clinic.email,
        template="people/email/sign_up_existing.txt",
        context={
            "user": existing,
            "clinic": clinic,
            "reset_link": reset,
            "login_link": base + reverse("portal:login"),
            "hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
        },
    )


def sign_up_details(*, token: str) -> dict:
    """What a sign-up link carries (first_name, last_name, email, phone, next); AccountLinkInvalid
    if tampered, AccountLinkExpired when older than SIGN_UP_LINK_HOURS."""
    signer = ClockSigner(salt=SIGN_UP)
    try:
        details = json.loads(signer.unsign_object(token))
        _, age = signer.unsign_age(token)
    except (signing.BadSignature, ValueError, TypeError):
        raise AccountLinkInvalid(
            "This link is not valid. Check that you used the whole link from the email, "
            "or sign up again."
        ) from None
    if age > _max_age():
        raise AccountLinkExpired(
            f"This link has expired (links work for {settings.SIGN_UP_LINK_HOURS} hours). "
            "Sign up again to get a new one."
        )
    return details


@transaction.atomic
def sign_up_complete(*, token: str, password: str, confirm: str) -> Patient:
    """The person chose their password: the patient and their portal login (the email) are created.
    A second use of the link finds the login and says to log in."""
    details = sign_up_details(token=token)
    passwords_match(password, confirm)
    if User.objects.filter(username__iexact=details["email"]).exists():
        raise Conflict(
            "Your account is already set up; log in with your email and password.",
            code="login_taken",
        )
    return patient_sign_up(
        first_name=details["first_name"],
        last_name=details["last_name"],
        email=details["email"],
        phone=details.get("phone", ""),
        password=password,
    )
