"""Fair log-in throttling (SPEC 14, issue 18 point 4): slows guessing down without letting anyone
lock a real user out.

Two limits, each counting the failed log-ins of the last 15 minutes (WINDOW):
- per login (username): 5 free failures, then each further try waits 1, 2, 4, 8, then 15 minutes
  at most after the last failure;
- per IP address: 20 free failures (whatever the logins), then the same growing waits.
Tries refused during a wait are not checked and not counted, so a wait never grows while it runs:
no one, with the right password or not, can make it last longer than 15 minutes after the last
failure that was checked.

The per-login wait does not apply in a browser where that login has logged in before (a signed,
HttpOnly device cookie set at each successful log-in): whatever an attacker elsewhere does to the
owner's username, the owner's own browser is held only by its own IP's limit (the device-cookie
scheme of OWASP's "Slow down online guessing attacks"). A successful log-in, a password reset or an
unlock by Full Access clears the login's failures. Failures on known logins, waits and unlocks are
in the activity log.

django-axes (the earlier lockout) locked a username for everyone, and every try during the lock
restarted it; its per-IP and per-username modes cannot exempt a known device, hence this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core import signing
from django.db import transaction
from django.db.models import Count, Max

from carnet.core import activity, clock
from carnet.core.errors import CarnetError
from carnet.core.permissions import AccessLevel, Action, require, staff_of

from .models import LoginFailure, SignUpEvent

User = get_user_model()
# Operators see failures and waits in the server log; the login and the address are left out
# (personal data), they are in the activity log for Full Access.
log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=15)
LOGIN_FREE_FAILURES = 5
IP_FREE_FAILURES = 20
MAX_WAIT = timedelta(minutes=15)
DEVICE_COOKIE = "carnet_device"
DEVICE_SALT = "carnet.people.login_device"
DEVICE_DAYS = 180


@dataclass(frozen=True)
class Attempt:
    username: str  # the login's username (or what was typed when it matches none), lower-cased
    ip: str | None
    trusted_device: bool


def wait_after(failures: int, free: int) -> timedelta:
    """How long the next try waits after the last of `failures` (0 while within the free ones)."""
    if failures < free:
        return timedelta(0)
    return min(timedelta(minutes=2 ** (failures - free)), MAX_WAIT)


def _remaining(qs, free: int, now) -> timedelta:
    row = qs.filter(at__gt=now - WINDOW).aggregate(n=Count("id"), last=Max("at"))
    if not row["n"] or row["n"] < free:
        return timedelta(0)
    return max(row["last"] + wait_after(row["n"], free) - now, timedelta(0))


def login_wait(attempt: Attempt) -> timedelta:
    """How long this try must wait before its password is even checked (zero: go ahead)."""
    now = clock.now()
    waits = [timedelta(0)]
    if attempt.ip:
        waits.append(_remaining(LoginFailure.objects.filter(ip=attempt.ip), IP_FREE_FAILURES, now))
    if not attempt.trusted_device:
        waits.append(
            _remaining(
                LoginFailure.objects.filter(username=attempt.username, trusted_device=False),
                LOGIN_FREE_FAILURES,
                now,
            )
        )
    return max(waits)


@transaction.atomic
def login_failure_record(attempt: Attempt) -> None:
    """A checked password was wrong: count it (and forget failures too old to count)."""
    now = clock.now()
    LoginFailure.objects.filter(at__lte=now - WINDOW).delete()
    LoginFailure.objects.create(
        at=now, username=attempt.username, ip=attempt.ip, trusted_device=attempt.trusted_device
    )
    user = User.objects.filter(username__iexact=attempt.username).first()
    wait = login_wait(attempt)
    log.info(
        "Failed log-in (%s login); next try waits %d s",
        "known" if user else "unknown",
        wait.total_seconds(),
    )
    if user is None:
        return
    activity.record(
        actor=None,
        verb="login_failed",
        obj=user,
        after={"ip": attempt.ip, "trusted_device": attempt.trusted_device},
    )
    if wait:
        activity.record(
            actor=None,
            verb="login_throttled",
            obj=user,
            after={"ip": attempt.ip, "wait_seconds": int(wait.total_seconds())},
        )


def login_failures_clear(*, username: str) -> int:
    """Forget a login's failures (after a successful log-in or a password reset)."""
    return LoginFailure.objects.filter(username=username.lower()).delete()[0]


def login_wait_for_user(user) -> timedelta:
    """The wait a new browser would meet for this login now (what the staff page shows)."""
    return login_wait(Attempt(username=user.username.lower(), ip=None, trusted_device=False))


@transaction.atomic
def login_unlock(*, actor, user) -> int:
    """Full Access clears a login's failed tries at once (an owner's, only an Account Owner)."""
    require(actor, Action.STAFF_MANAGE)
    target = staff_of(user)
    if target is not None and target.access_level == AccessLevel.ACCOUNT_OWNER:
        require(actor, Action.OWNERSHIP)
    cleared = login_failures_clear(username=user.username)
    activity.record(
        actor=actor, verb="login_unlocked", obj=user, after={"failures_cleared": cleared}
    )
    return cleared


def device_trusted_users(cookie: str | None) -> set[int]:
    """The logins that have logged in from this browser (from its signed device cookie)."""
    if not cookie:
        return set()
    try:
        return set(signing.loads(cookie, salt=DEVICE_SALT, max_age=timedelta(days=DEVICE_DAYS)))
    except (signing.BadSignature, TypeError, ValueError):
        return set()


def device_cookie_value(cookie: str | None, user) -> str:
    """The device cookie after `user` logged in here (a few logins at most are remembered)."""
    known = [pk for pk in device_trusted_users(cookie) if pk != user.pk][-4:]
    return signing.dumps([*known, user.pk], salt=DEVICE_SALT)


# ---------------------------------------------------------------- online sign-up, per IP address
SIGN_UP_WINDOW = timedelta(hours=1)
SIGN_UPS_PER_IP = 5


class TooManySignUps(CarnetError):
    status = 429
    code = "too_many_sign_ups"


def sign_up_check(*, ip: str | None) -> None:
    """At most SIGN_UPS_PER_IP online sign-ups per address and hour: new patient records cannot be
    made in bulk to get round the per-patient online booking limit."""
    now = clock.now()
    recent = SignUpEvent.objects.filter(ip=ip, at__gt=now - SIGN_UP_WINDOW).order_by("at")
    if ip and recent.count() >= SIGN_UPS_PER_IP:
        minutes = -(-int((recent.first().at + SIGN_UP_WINDOW - now).total_seconds()) // 60)
        raise TooManySignUps(
            f"Too many sign-ups from your network in the last hour. Try again in {minutes} "
            "minutes, or call the clinic to book."
        )


def sign_up_record(*, ip: str | None) -> None:
    now = clock.now()
    SignUpEvent.objects.filter(at__lte=now - SIGN_UP_WINDOW).delete()
    SignUpEvent.objects.create(at=now, ip=ip)
