import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from carnet.core.models import ActivityLog
from carnet.core.pages import run_action, staff_required
from carnet.core.permissions import Action, staff_of
from carnet.people import login_sessions, login_throttle, passwords, two_factor
from carnet.people.models import ApiToken
from carnet.people.services import api_token_create, api_token_revoke
from carnet.scheduling.booking_views import landing

from .account_views import CHANGE_REQUIRED
from .forms import LoginForm
from .middleware import LOGGED_IN_AT, LOGIN_SESSION_ID
from .today import today_board


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if ok and target else default


def login_view(
    request,
    *,
    kind: str = "staff",
    template: str = "staff/login.html",
    home: str = "staff:dashboard",
):
    form = LoginForm(request, request.POST or None, kind=kind)
    if request.method == "POST" and form.is_valid():
        login(request, form.user)
        request.session[LOGGED_IN_AT] = (
            time.time()
        )  # the absolute lifetime counts from here (staff.middleware)
        # A browser remembered at the code step skips it (people.two_factor);
        # otherwise the middleware asks.
        remembered = two_factor.remembered_device(
            form.user, request.COOKIES.get(two_factor.REMEMBER_COOKIE)
        )
        if remembered is not None:
            otp_login(request, remembered)
        if not passwords.password_meets_rules(
            user=form.user, password=form.cleaned_data["password"]
        ):
            request.session[CHANGE_REQUIRED] = True
            response = redirect(
                "staff:password_change" if kind == "staff" else "portal:password_change"
            )
        else:
            response = redirect(safe_next(request, default=home))
        # This browser is now known for this login: the login's throttle no longer holds it
        # (people.login_throttle).
        response.set_cookie(
            login_throttle.DEVICE_COOKIE,
            login_throttle.device_cookie_value(
                request.COOKIES.get(login_throttle.DEVICE_COOKIE), form.user
            ),
            max_age=login_throttle.DEVICE_DAYS * 86400,
            httponly=True,
            samesite="Lax",
            secure=settings.SESSION_COOKIE_SECURE,
        )
        return response
    return render(
        request,
        template,
        {"form": form, "next": request.GET.get("next", "")},
        status=429 if form.wait else 200,
    )


@require_POST
def logout_view(request):
    was_patient = staff_of(request.user) is None and hasattr(request.user, "patient")
    login_sessions.login_session_forget(row_id=request.session.get(LOGIN_SESSION_ID))
    logout(request)
    messages.info(request, "You are logged out.")
    return redirect("portal:login" if was_patient else "staff:login")


@staff_required(Action.DASHBOARD_VIEW)
def dashboard(request):
    return render(request, "staff/dashboard.html", today_board(actor=request.user))


def home(request):
    """`/`: the clinic's landing page for visitors (locations, hours,
    Book online); Today for staff."""
    if not request.user.is_authenticated:
        return landing(request)
    return dashboard(request)


home.required_action = dashboard.required_action  # for staff it is the dashboard, checked there


@staff_required(Action.ACTIVITY_LOG_VIEW)
def activity_log(request):
    qs = ActivityLog.objects.all()
    what = request.GET.get("type", "")
    if what:
        qs = qs.filter(object_type=what)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    types = (
        ActivityLog.objects.order_by("object_type").values_list("object_type", flat=True).distinct()
    )
    return render(request, "staff/activity_log.html", {"page": page, "types": types, "type": what})


@staff_required(Action.API_TOKEN_OWN)
def tokens(request):
    new_secret = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name:
            messages.error(
                request, "Give the token a name, such as the integration that will use it."
            )
        else:
            result, denied = run_action(
                request, lambda: api_token_create(actor=request.user, name=name)
            )
            if denied:
                return denied
            if result:
                new_secret = result[1]
    mine = ApiToken.objects.filter(staff=staff_of(request.user)).order_by("-created_at")
    return render(request, "staff/tokens.html", {"tokens": mine, "new_secret": new_secret})


@require_POST
@staff_required(Action.API_TOKEN_OWN)
def token_revoke(request, pk: int):
    token = get_object_or_404(ApiToken, pk=pk, staff=staff_of(request.user))
    _, denied = run_action(
        request,
        lambda: api_token_revoke(actor=request.user, token=token),
        success=f"Token “{token.name}” revoked.",
    )
    return denied or redirect("staff:tokens")
