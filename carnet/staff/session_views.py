"""Your sessions, for both doors (people.login_sessions): where this login is logged in, and ending
the others. The portal's is the same view with door="portal" (portal/views.py)."""

from django.contrib import messages
from django.shortcuts import redirect, render

from carnet.core.errors import CarnetError
from carnet.core.pages import staff_required
from carnet.core.permissions import Action
from carnet.people import login_sessions

from .middleware import LOGIN_SESSION_ID


def sessions_page(request, *, door: str, context: dict | None = None):
    user, current = request.user, request.session.get(LOGIN_SESSION_ID)
    if request.method == "POST":
        which = request.POST.get("end", "")
        if which == "others":
            ended = [
                login_sessions.login_session_end(user=user, pk=row.pk)
                for row in login_sessions.login_sessions_active(user=user)
                if row.pk != current
            ]
            messages.success(
                request, f"Ended {len(ended)} other session{'s' if len(ended) != 1 else ''}."
            )
        elif which.isdigit() and int(which) != current:
            try:
                row = login_sessions.login_session_end(user=user, pk=int(which))
            except CarnetError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request, f"Ended the session on {login_sessions.device_label(row.user_agent)}."
                )
        else:
            messages.error(request, "To end this session, use Log out.")
        return redirect(f"{door}:sessions")
    rows = [
        (row, login_sessions.device_label(row.user_agent), row.pk == current)
        for row in login_sessions.login_sessions_active(user=user)
    ]
    return render(request, "staff/sessions.html", {"door": door, "rows": rows, **(context or {})})


@staff_required(Action.ACCOUNT_OWN)
def sessions(request):
    return sessions_page(request, door="staff")
