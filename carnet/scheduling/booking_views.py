"""The public online booking pages (SPEC 4, 11): /book/<location>/ → choose treatment, practitioner
and a free slot → log in or sign up → confirm. The booking itself is
online.appointment_book_online."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from carnet.clinic.models import Location
from carnet.clinic.selectors import clinic_get, locations_active
from carnet.core import clock
from carnet.core.errors import CarnetError, NotFound
from carnet.core.idempotency import new_form_key
from carnet.core.limits import day_from_text
from carnet.core.pages import apply_errors
from carnet.people import login_throttle
from carnet.people.signups import sign_up_request

from . import online
from .coverage import passes
from .selectors import treatments_offered


class SignUpForm(forms.Form):
    first_name = forms.CharField(
        max_length=80, widget=forms.TextInput(attrs={"autocomplete": "given-name"})
    )
    last_name = forms.CharField(
        max_length=80, widget=forms.TextInput(attrs={"autocomplete": "family-name"})
    )
    email = forms.EmailField(
        help_text="Your login for My Account.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    phone = forms.CharField(
        max_length=40, required=False, widget=forms.TextInput(attrs={"autocomplete": "tel"})
    )


class ConfirmForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)


def _choice(request, location):
    """The treatment, practitioner (None: any) and day chosen in the query string
    (each may be None)."""
    treatments = online.bookable_treatments(location=location)
    practitioners = online.bookable_practitioners(location=location)
    treatment = treatments.filter(pk=_int(request.GET.get("treatment"))).first()
    practitioner = practitioners.filter(pk=_int(request.GET.get("practitioner"))).first()
    today = clock.today(ZoneInfo(location.time_zone))
    chosen_day = day_from_text(request.GET.get("day"), field="day")
    day = online.horizon_check(day=max(chosen_day or today, today), location=location)
    return treatments, practitioners, treatment, practitioner, day if chosen_day else None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _location(location_id: int) -> Location:
    return get_object_or_404(Location, pk=location_id, is_active=True)


def start(request):
    """The "Book online" link: straight to the one location, or the choice of location when
    there are several."""
    locations = list(locations_active())
    if len(locations) == 1:
        return redirect("booking:book", location_id=locations[0].pk)
    return _locations_page(request, locations, landing=False)


def landing(request):
    """The clinic's page for visitors (`/` when nobody is logged in): its locations with their
    hours, what can be booked online with length and price, a Book button each, and the doors to
    the patient portal and the staff log-in."""
    return _locations_page(request, list(locations_active()), landing=True)


def _locations_page(request, locations, *, landing: bool):
    clinic = clinic_get()
    return render(
        request,
        "scheduling/booking_start.html",
        {
            "clinic": clinic,
            "landing": landing,
            "locations": [(loc, online.location_hours(location=loc)) for loc in locations],
            "treatments": [
                (t, clinic.money(passes.price_with_tax_minor(t)))
                for t in online.bookable_treatments(location=locations[0]).prefetch_related("taxes")
            ]
            if locations
            else [],
        },
    )


WEEK = 7
STRIP_WEEKS = 6


def _times_url(location, treatment, practitioner, day: dt.date) -> str:
    query = {"treatment": treatment.pk, "day": day.isoformat()}
    if practitioner:
        query["practitioner"] = practitioner.pk
    return reverse("booking:book", args=[location.pk]) + "?" + urlencode(query)


def book(request, location_id: int):
    """Choose a treatment (with its length and price) and a practitioner or "any", then a free time:
    the week from the first available day (or the day asked for), with a strip of weeks ahead."""
    location = _location(location_id)
    treatments, practitioners, treatment, practitioner, day = _choice(request, location)
    clinic = clinic_get()
    today = clock.today(ZoneInfo(location.time_zone))
    week, first, strip = [], None, []
    if treatment:
        start = (
            day
            or online.first_available_day(
                treatment=treatment, location=location, start=today, practitioner=practitioner
            )
            or today
        )
        confirm_url = reverse("booking:confirm", args=[location.pk])
        for offset in range(WEEK):
            date = start + dt.timedelta(days=offset)
            times = [
                (
                    at,
                    person,
                    confirm_url
                    + "?"
                    + urlencode(
                        {
                            "treatment": treatment.pk,
                            "practitioner": person.pk,
                            "start": at.isoformat(),
                            **({} if practitioner else {"any": 1}),
                        }
                    ),
                )
                for at, person in online.bookable_times(
                    treatment=treatment, location=location, day=date, practitioner=practitioner
                )
            ]
            week.append((date, times))
            first = first or (times[0] if times else None)
        strip = [
            (
                monday,
                _times_url(location, treatment, practitioner, max(monday, today)),
                monday <= start < monday + dt.timedelta(days=WEEK),
            )
            for monday in (
                today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=n)
                for n in range(STRIP_WEEKS)
            )
        ]
        day = start
    return render(
        request,
        "scheduling/booking_choose.html",
        {
            "clinic": clinic,
            "location": location,
            "treatment": treatment,
            "practitioner": practitioner,
            "treatments": [
                (t, clinic.money(passes.price_with_tax_minor(t)), bool(t.taxes.exists()))
                for t in treatments
            ],
            "practitioners": practitioners,
            "day": day,
            "week": week,
            "first": first,
            "strip": strip,
            "not_offered": bool(
                treatment
                and practitioner
                and not treatments_offered(practitioner).filter(pk=treatment.pk).exists()
            ),
            "earlier": _times_url(
                location, treatment, practitioner, max(day - dt.timedelta(days=WEEK), today)
            )
            if treatment and day > today
            else "",
            "later": _times_url(location, treatment, practitioner, day + dt.timedelta(days=WEEK))
            if treatment
            else "",
        },
    )


def confirm(request, location_id: int):
    location = _location(location_id)
    _treatments, _practitioners, treatment, practitioner, _day = _choice(
        request, location
    )  # practitioner: the slot's
    try:
        start = dt.datetime.fromisoformat(request.GET.get("start", ""))
    except ValueError:
        start = None
    if not (treatment and practitioner and start and start.tzinfo):
        raise NotFound("Choose a treatment, a practitioner and a time first.")
    start = start.astimezone(ZoneInfo(location.time_zone))
    patient = getattr(request.user, "patient", None) if request.user.is_authenticated else None
    back = _times_url(
        location, treatment, None if request.GET.get("any") else practitioner, start.date()
    )
    signup = SignUpForm(request.POST if request.POST.get("action") == "signup" else None)
    form = ConfirmForm(
        request.POST if request.POST.get("action") == "confirm" else None,
        initial={"form_key": new_form_key()},
    )
    if request.method == "POST" and patient is None and signup.is_valid():
        ip = request.META.get("REMOTE_ADDR")
        try:
            login_throttle.sign_up_check(ip=ip)
            # The same answer whatever the email (people.signups): the link in the email finishes
            # the sign-up and comes back to this page, logged in, to confirm the booking.
            sign_up_request(
                **signup.cleaned_data,
                next_url=request.get_full_path(),
                base_url=settings.SITE_URL or request.build_absolute_uri("/"),
            )
            login_throttle.sign_up_record(ip=ip)
        except CarnetError as exc:
            apply_errors(signup, exc)
        else:
            return redirect("booking:sign_up_sent")
    elif request.method == "POST" and patient is not None and form.is_valid():
        try:
            appointment = online.appointment_book_online(
                user=request.user,
                patient=patient,
                treatment=treatment,
                practitioner=practitioner,
                location=location,
                start=start,
                idempotency_key=form.cleaned_data["form_key"],
            )
        except CarnetError as exc:
            if exc.code == "double_booked":
                messages.error(request, exc.message)
                return redirect(back)
            apply_errors(form, exc)
        else:
            if appointment is None:
                messages.info(request, "Your booking was already received; it is listed below.")
            else:
                messages.success(
                    request,
                    f"Booked: {treatment} with {practitioner} on "
                    f"{start:%A %-d %B %Y at %H:%M}. A confirmation is on its way by email.",
                )
            return redirect("portal:home")
    return render(
        request,
        "scheduling/booking_confirm.html",
        {
            "quote": passes.visit_quote(
                patient=patient,
                treatment=treatment,
                visit_date=start.date(),
                location=location,
                start=start,
            ),
            "clinic": clinic_get(),
            "location": location,
            "treatment": treatment,
            "practitioner": practitioner,
            "start": start,
            "patient": patient,
            "signup": signup,
            "form": form,
            "back": back,
            "login_url": reverse("portal:login")
            + "?"
            + urlencode({"next": request.get_full_path()}),
        },
    )


def sign_up_sent(request):
    """After the sign-up form: the same page whatever the email (it may already have an account)."""
    return render(
        request,
        "scheduling/booking_sign_up_sent.html",
        {"clinic": clinic_get(), "hours": settings.SIGN_UP_LINK_HOURS},
    )
