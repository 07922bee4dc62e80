"""Page plumbing every app's pages share: guards (every staff page names the action it needs; the
check runs on the server) and the helpers that turn a service's error into a visible message.
It sits in core so that the apps' pages need nothing from `staff`, which sits above them all."""

import hashlib
from functools import wraps

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse

from carnet.core.errors import CarnetError, NotAllowed
from carnet.core.idempotency import claim_form_key
from carnet.core.permissions import Action, require, staff_of


def not_allowed(request, message: str):
    return render(request, "not_allowed.html", {"message": message}, status=403)


def staff_required(action: Action):
    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect(f"{reverse('staff:login')}?next={request.get_full_path()}")
            if (
                staff_of(request.user) is None
                and getattr(request.user, "patient", None) is not None
            ):
                return redirect("portal:home")
            try:
                require(request.user, action)
            except NotAllowed as exc:
                return not_allowed(request, exc.message)
            return view(request, *args, **kwargs)

        wrapper.required_action = action
        return wrapper

    return decorate


def apply_errors(form, exc: CarnetError) -> None:
    """Show a service's error on the form: on the named fields, or at the top."""
    placed = False
    for field, msgs in exc.fields.items():
        target = (
            field
            if field in form.fields
            else (field.removesuffix("_id") if field.removesuffix("_id") in form.fields else None)
        )
        for msg in msgs:
            if target:
                form.add_error(target, msg)
                placed = True
    if not placed:
        form.add_error(None, exc.message)


_REPEAT = object()


def run_action(request, fn, *, success: str | None = None, once: bool = False):
    """Run a service from a button (no form): a domain error becomes a visible message.

    With `once`, the button's form carries a `form_key`: a repeat of that same submit (address and
    fields; a double click, a reload) does nothing and says so. The key is claimed in the same
    transaction as `fn` (core.idempotency), so a refused attempt frees it for a retry."""
    try:
        result = _once(request, fn) if once else fn()
    except NotAllowed as exc:
        return None, not_allowed(request, exc.message)
    except CarnetError as exc:
        messages.error(request, exc.message)
        return None, None
    if result is _REPEAT:
        messages.info(request, "That was already done; nothing was done twice.")
        return None, None
    if success:
        messages.success(request, success)
    return result, None


def _once(request, fn):
    # One form key may serve several buttons of a page (a panel):
    # the submit's own fields tell them apart.
    key = request.POST.get("form_key", "")
    fields = sorted(
        (k, v) for k, vs in request.POST.lists() for v in vs if k != "csrfmiddlewaretoken"
    )
    submit = hashlib.sha256(repr((request.path, fields)).encode()).hexdigest()[:32]
    with transaction.atomic():
        if not claim_form_key(user=request.user, key=f"{key}:{submit}" if key else ""):
            return _REPEAT
        return fn()


def save_form(request, form, save, *, success):
    """Run `save(cleaned_data)` on a valid POSTed form; domain errors land on the form.

    Returns (result, response): a response only when the page must be replaced (not allowed).
    """
    if request.method != "POST" or not form.is_valid():
        return None, None
    try:
        result = save(form.cleaned_data)
    except NotAllowed as exc:
        return None, not_allowed(request, exc.message)
    except CarnetError as exc:
        apply_errors(form, exc)
        return None, None
    messages.success(request, success(result))
    return result, None


def save_once(request, form, write, *, calls_gateway: bool = False):
    """Run `write()` unless this form (its form_key) was already submitted; errors land on the form.

    Returns (outcome, value): ("ok", result), ("repeat", None), ("denied", a 403 page) or
    ("error", None). The key is claimed in the same transaction as the write (core.idempotency).
    `calls_gateway`: the write charges or refunds a card; it records its own card attempt keyed by
    the form (billing.card_attempts) and calls the gateway between its own commits, so no
    transaction may wrap it here (a repeat finds the attempt and returns its result).
    """
    try:
        if calls_gateway:
            return "ok", write()
        with transaction.atomic():
            if not claim_form_key(user=request.user, key=form.cleaned_data.get("form_key", "")):
                messages.info(request, "That was already saved; nothing was done twice.")
                return "repeat", None
            return "ok", write()
    except NotAllowed as exc:
        return "denied", not_allowed(request, exc.message)
    except CarnetError as exc:
        apply_errors(form, exc)
        return "error", None
