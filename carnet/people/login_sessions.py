"""Your sessions (SPEC 14, issue 18 point 8): each login sees where it is logged in (browser and
system, IP address, last active) and can end any other session, staff and patients alike.

A LoginSession row follows each logged-in session (staff.middleware.LoginSessionMiddleware writes it
at most once a minute, so a busy page costs no query). Ending one deletes that session from the
session store, so its next request is logged out; no per-request check is needed.
"""

from __future__ import annotations

import re
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.db import transaction

from carnet.core import activity, clock
from carnet.core.errors import NotFound

from .models import LoginSession

_BROWSERS = (
    ("Edge", r"Edg/"),
    ("Opera", r"OPR/"),
    ("Firefox", r"Firefox/"),
    ("Chrome", r"Chrome/|CriOS/"),
    ("Safari", r"Safari/"),
)
_SYSTEMS = (
    ("iPhone", r"iPhone"),
    ("iPad", r"iPad"),
    ("Android", r"Android"),
    ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("ChromeOS", r"CrOS"),
    ("Linux", r"Linux"),
)


def device_label(user_agent: str) -> str:
    """ "Firefox on Windows" from a User-Agent header; "Unknown browser" when it
    says nothing we know."""
    ua = user_agent or ""
    browser = next((name for name, pattern in _BROWSERS if re.search(pattern, ua)), "")
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, ua)), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"


def _store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def login_session_touch(
    *, user, session_key: str, row_id: int | None, ip: str | None, user_agent: str
) -> int:
    """Record (or refresh) this session's row; returns its id, kept in the session."""
    now = clock.now()
    fields = {
        "session_key": session_key,
        "ip": ip,
        "user_agent": (user_agent or "")[:300],
        "last_active_at": now,
    }
    if row_id is not None and LoginSession.objects.filter(pk=row_id, user=user).update(**fields):
        return row_id
    return LoginSession.objects.create(user=user, created_at=now, **fields).pk


def login_sessions_active(*, user) -> list[LoginSession]:
    """This login's sessions that may still be alive (idle timeout and lifetime not passed), newest
    first. Older rows are forgotten on the way."""
    now = clock.now()
    stale = LoginSession.objects.filter(
        user=user, last_active_at__lt=now - timedelta(minutes=settings.SESSION_IDLE_MINUTES + 1)
    ) | LoginSession.objects.filter(
        user=user, created_at__lt=now - timedelta(hours=settings.SESSION_MAX_HOURS)
    )
    stale.delete()
    rows = list(LoginSession.objects.filter(user=user).order_by("-last_active_at", "-pk"))
    store = _store()
    return [row for row in rows if store().exists(row.session_key)]


@transaction.atomic
def login_session_end(*, user, pk: int) -> LoginSession:
    """End one of the user's own sessions (another browser):
    its next request finds itself logged out."""
    row = LoginSession.objects.filter(pk=pk, user=user).first()
    if row is None:
        raise NotFound("That session has already ended.")
    _store()(session_key=row.session_key).delete()
    row.delete()
    activity.record(
        actor=user,
        verb="session_ended",
        obj=user,
        after={"device": device_label(row.user_agent), "ip": row.ip},
    )
    return row


def login_session_forget(*, row_id: int | None) -> None:
    """At log-out: the row goes with the session."""
    if row_id is not None:
        LoginSession.objects.filter(pk=row_id).delete()
