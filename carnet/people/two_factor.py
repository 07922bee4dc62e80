"""Two-factor log-in (SPEC 14, issue 18 point 3): an authenticator app
(TOTP) and ten recovery codes.

Built on django-otp: a TOTPDevice per login (one at a time) and a StaticDevice holding the recovery
codes, each used once. A recovery code is stored only as a slow, salted digest (recovery_digest), so
a copy of the database — a backup, a read-only leak — hands out no second factor. Required for Full
Access and Account Owner, and for every staff level when the clinic turns on "two-factor for all
staff"; optional for patients and other staff. Both devices carry django-otp's throttle (each
wrong code doubles the wait before the next one is checked).

After the password, a session is not verified until a code is given (staff.middleware keeps it on
the verify or enrol page; the API answers 403). "Remember this browser" (off by default) is a signed
cookie naming the login and a digest of its authenticator's secret, so a reset ends it.
"""

from __future__ import annotations

import base64
import hashlib

import segno
from django.conf import settings
from django.core import signing
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from carnet.clinic.selectors import clinic_get
from carnet.core import activity
from carnet.core.errors import ValidationFailed
from carnet.core.permissions import AccessLevel, Action, require, staff_of

RECOVERY_CODES = 10
# Fixed: the stored digests depend on it (changing it would void every code already handed out).
RECOVERY_ITERATIONS = 100_000
REMEMBER_COOKIE = "carnet_2fa_browser"
REMEMBER_SALT = "carnet.people.two_factor.remember"


def two_factor_required(user) -> bool:
    """Must this login use a second factor? Full Access and up,
    or all staff if the clinic says so."""
    staff = staff_of(user)
    if staff is None:
        return False
    return staff.access_level >= AccessLevel.FULL_ACCESS or clinic_get().two_factor_all_staff


def authenticator(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def enrolment_device(user) -> TOTPDevice:
    """The not yet confirmed authenticator being set up (the same one until confirmed, so a reload
    shows the same QR code)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// address as an inline SVG (no script, no inline style: fits the CSP)."""
    return segno.make(device.config_url, error="m").svg_inline(
        scale=5, dark="#000", light="#fff", title="QR code for your authenticator app"
    )


def secret_text(device: TOTPDevice) -> str:
    """The secret in base 32, in groups of four, for typing into an app by hand."""
    raw = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def recovery_digest(user_id: int, code: str) -> str:
    """What is stored for a recovery code: PBKDF2-SHA256 of the code, salted with the login's id,
    as 16 hex digits (django-otp's StaticToken holds 16 characters). Slow on purpose: the codes are
    short (40 random bits), so a fast hash of them could be reversed by trying them all. The login's
    id as salt makes each login's codes a search of their own."""
    salt = f"carnet.recovery-code:{user_id}".encode()
    return hashlib.pbkdf2_hmac("sha256", code.encode(), salt, RECOVERY_ITERATIONS)[:8].hex()


def _new_codes(user) -> list[str]:
    """Ten new codes for the login, shown once: only their digests are kept."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(
        [StaticToken(device=device, token=recovery_digest(user.pk, c)) for c in codes]
    )
    return codes


def _clean(code: str) -> str:
    return "".join((code or "").split()).lower()


@transaction.atomic
def two_factor_enrol(*, user, device: TOTPDevice, code: str) -> list[str]:
    """Confirm the authenticator with a code from it; returns the ten new recovery
    codes (shown once)."""
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user, confirmed=False)
    if not device.verify_token(_clean(code)):
        raise ValidationFailed(
            "That code is not right. Type the 6 digits your app shows now (they change "
            "every 30 seconds).",
            fields={"code": ["Not the code the app shows now."]},
        )
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _new_codes(user)
    activity.record(actor=user, verb="two_factor_enabled", obj=user)
    return codes


def two_factor_check(*, user, code: str):
    """The device that accepts this code (the authenticator's 6 digits, or an unused recovery code,
    which is then used up), or None. A wrong code makes the next check wait
    (django-otp's throttle)."""
    code = _clean(code)
    model = TOTPDevice if code.isdigit() and len(code) <= 8 else StaticDevice
    if model is StaticDevice:
        code = recovery_digest(user.pk, code)  # django-otp then finds (and deletes) the digest
    with transaction.atomic():
        device = (
            model.objects.select_for_update()
            .filter(user=user, confirmed=True)
            .order_by("pk")
            .first()
        )
        if device is None:
            return None
        allowed, _ = device.verify_is_allowed()
        if not allowed:
            raise ValidationFailed(
                "Too many wrong codes. Wait a few seconds and try again.",
                fields={"code": ["Wait a few seconds before the next try."]},
            )
        if not device.verify_token(code):
            return None
    if model is StaticDevice:
        activity.record(
            actor=user,
            verb="two_factor_recovery_code_used",
            obj=user,
            after={"codes_left": recovery_codes_left(user)},
        )
    return device


@transaction.atomic
def recovery_codes_renew(*, user) -> list[str]:
    """Ten new recovery codes; the old ones stop working."""
    if authenticator(user) is None:
        raise ValidationFailed("Set up an authenticator app first.")
    codes = _new_codes(user)
    activity.record(actor=user, verb="two_factor_recovery_codes_renewed", obj=user)
    return codes


@transaction.atomic
def two_factor_disable(*, user, password: str) -> None:
    """Turn off one's own second factor (current password required);
    refused where it is required."""
    if two_factor_required(user):
        raise ValidationFailed(
            "Two-factor log-in is required for your account; it cannot be turned off. "
            "You can set up a new authenticator app instead."
        )
    if not user.check_password(password or ""):
        raise ValidationFailed(
            "Your password is not right; type it again.",
            fields={"password": ["This is not your current password."]},
        )
    _remove_devices(user)
    activity.record(actor=user, verb="two_factor_disabled", obj=user)


@transaction.atomic
def two_factor_reset(*, actor, staff) -> None:
    """An Account Owner removes another staff member's second factor (a lost phone): they set up a
    new one at their next log-in (or log in without one where it is not required). Logged."""
    require(actor, Action.OWNERSHIP)
    if staff.user_id == getattr(actor, "pk", None):
        raise ValidationFailed(
            "You cannot reset your own second factor here; use your recovery codes, or ask "
            "another Account Owner."
        )
    _remove_devices(staff.user)
    activity.record(
        actor=actor, verb="two_factor_reset", obj=staff.user, after={"staff": staff.display_name}
    )


def _remove_devices(user) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


# ---------------------------------------------------------------- "Remember this browser"


def _device_digest(device: TOTPDevice) -> str:
    return hashlib.sha256(f"{device.pk}:{device.key}".encode()).hexdigest()[:24]


def remember_cookie_value(user, device: TOTPDevice) -> str:
    return signing.dumps([user.pk, _device_digest(device)], salt=REMEMBER_SALT)


def remembered_device(user, cookie: str | None) -> TOTPDevice | None:
    """The authenticator this browser was remembered for, if the cookie is this login's, young
    enough, and the authenticator is still the same (a reset or a new app ends it)."""
    if not cookie:
        return None
    try:
        pk, digest = signing.loads(
            cookie, salt=REMEMBER_SALT, max_age=settings.TWO_FACTOR_REMEMBER_DAYS * 86400
        )
    except (signing.BadSignature, TypeError, ValueError):
        return None
    device = authenticator(user)
    if pk != user.pk or device is None or digest != _device_digest(device):
        return None
    return device
