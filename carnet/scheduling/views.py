"""Staff schedule pages: the day/week grid per location, booking, the appointment panel
(an htmx fragment: status buttons swap it in place) and the patient's Appointments tab.

All reads and writes go through selectors.py, services.py and arrival.py; these views only
turn form input into service calls and domain errors into visible messages."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from carnet.clinic.models import Location, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.errors import NotAllowed, NotFound
from carnet.core.idempotency import new_form_key
from carnet.core.limits import day_from_text
from carnet.core.pages import not_allowed, run_action, save_once, staff_required
from carnet.core.permissions import Action, can, staff_of
from carnet.people.models import Patient, StaffMember
from carnet.people.selectors import patient_get, patient_search

from . import arrival, calendar, services
from .access import schedule_require, schedule_scope
from .coverage import passes
from .forms import BookForm, ClassForm, JoinForm, StartForm, aware
from .models import Appointment, Break, Status, Visit
from .selectors import appointment_get, calendar_appointments, free_grid, treatments_offered


def _location(request) -> Location | None:
    locations = Location.objects.filter(is_active=True).order_by("name")
    chosen = request.GET.get("location") or request.POST.get("location")
    if chosen and chosen.isdigit():
        found = locations.filter(pk=chosen).first()
        if found:
            return found
    staff = staff_of(request.user)
    own = staff.locations.filter(is_active=True).order_by("name").first() if staff else None
    return own or locations.first()


def _day(value: str | None, zone: ZoneInfo) -> dt.date:
    return day_from_text(value) or clock.today(zone)


def _schedulable(actor, location: Location):
    """Whom `actor` may book at `location`: everyone (all locations, or their own location) or only
    themselves; decided once per page rather than per column."""
    staff = staff_of(actor)
    try:
        schedule_require(actor, practitioner_id=0, location_id=location.pk)
    except NotAllowed:
        return lambda pk: staff is not None and staff.pk == pk
    return lambda pk: True


def _columns(actor, location: Location, days: list[dt.date]) -> list[dict]:
    """One column per (day, practitioner): practitioners working at the location that day or with a
    visible appointment there, each with its appointments, bookable free slots and breaks, placed on
    the calendar's 5-minute rows (calendar.py). A fixed handful of queries for the whole page
    (selectors.free_grid, one read of the span's appointments and breaks), not a few per column."""
    zone = ZoneInfo(location.time_zone)
    span_start = dt.datetime.combine(days[0], dt.time(), tzinfo=zone)
    span_end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    breaks = list(Break.objects.filter(location=location, start__lt=span_end, end__gt=span_start))
    by_day: dict[dt.date, dict[int, list[Appointment]]] = {}
    url = reverse("scheduling:appointment", args=[0])
    for a in calendar_appointments(actor=actor, start=span_start, end=span_end, location=location):
        calendar.place_appointment(a, zone)
        a.block = calendar.appointment_block(a, names=a.names, url=url.replace("/0/", f"/{a.pk}/"))
        by_day.setdefault(a.start.astimezone(zone).date(), {}).setdefault(
            a.practitioner_id, []
        ).append(a)
    working, grid = free_grid(location=location, days=days)
    may = _schedulable(actor, location)
    book = f"{reverse('scheduling:book')}?location={location.pk}"
    columns = []
    for day in days:
        appointments = by_day.get(day, {})
        people = {pk: p for pk, p in working.items() if (pk, day) in grid and may(pk)}
        people.update({pk: mine[0].practitioner for pk, mine in appointments.items()})
        day_start, day_end = (
            dt.datetime.combine(day, dt.time(), tzinfo=zone),
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone),
        )
        head, on = f"{day:%a} {day.day} {day:%b}", f"{day:%A} {day.day} {day:%B}"
        for practitioner in sorted(people.values(), key=lambda p: p.display_name):
            free = grid.get((practitioner.pk, day), []) if may(practitioner.pk) else []
            mine = appointments.get(practitioner.pk, [])
            pauses = [
                {
                    "item": b,
                    "local_start": b.start.astimezone(zone).replace(tzinfo=None),
                    "local_end": b.end.astimezone(zone).replace(tzinfo=None),
                    **calendar.place(b.start, b.end, day, zone),
                }
                for b in breaks
                if b.practitioner_id == practitioner.pk and b.start < day_end and b.end > day_start
            ]
            slots = calendar.free_slots(free, day, zone)
            blocks = [{"row": a.grid_row, "span": a.grid_span} for a in mine] + pauses + slots
            columns.append(
                {
                    "day": day,
                    "head": head,
                    "on": on,
                    "practitioner": practitioner,
                    "free": slots,
                    "appointments": mine,
                    "breaks": pauses,
                    "blocks": blocks,
                    "free_links": calendar.free_links(
                        slots,
                        book_url=f"{book}&practitioner={practitioner.pk}",
                        who=practitioner.display_name,
                    ),
                }
            )
            columns[-1]["body"] = calendar.column_body(columns[-1])
    return columns


@staff_required(Action.SCHEDULE_OWN)
def schedule(request):
    location = _location(request)
    view = "week" if request.GET.get("view") == "week" else "day"
    context = {
        "locations": Location.objects.filter(is_active=True).order_by("name"),
        "location": location,
        "view": view,
    }
    if location is None:
        return render(request, "scheduling/schedule.html", context)
    zone = ZoneInfo(location.time_zone)
    day = _day(request.GET.get("date"), zone)
    if view == "week":
        monday = day - dt.timedelta(days=day.weekday())
        days, step = [monday + dt.timedelta(days=i) for i in range(7)], dt.timedelta(days=7)
    else:
        days, step = [day], dt.timedelta(days=1)
    columns = _columns(request.user, location, days)
    context.update(
        day=day,
        days=days,
        columns=columns,
        window=calendar.window(columns),
        zone=location.time_zone,
        prev=day - step,
        next=day + step,
        today=clock.today(zone),
        open=int(request.GET["open"]) if request.GET.get("open", "").isdigit() else None,
    )
    return render(request, "scheduling/schedule.html", context)


def _chosen(request, name: str, model):
    raw = request.POST.get(name) or request.GET.get(name) or ""
    return model.objects.filter(pk=int(raw)).first() if raw.isdigit() and len(raw) < 12 else None


def _patient_choices(request) -> dict:
    """The type-ahead's list: the patient already chosen (kept whatever is typed next) and the
    matches for `q` (name, phone or email)."""
    query = (request.GET.get("q") or request.POST.get("q") or "").strip()[:100]
    chosen = _chosen(request, "patient", Patient)
    found = list(patient_search(query=query, limit=8)) if query else []
    shown = ([chosen] if chosen else []) + [p for p in found if not chosen or p.pk != chosen.pk]
    # Phone and email beside each name only for staff who may look patients up
    # (not Practitioner (Limited)).
    return {
        "query": query,
        "chosen": chosen,
        "shown": shown,
        "contact": can(request.user, Action.PATIENT_VIEW),
    }


def _book_context(request, form, location: Location, practitioner) -> dict:
    return {
        "form": form,
        "location": location,
        "practitioner": practitioner,
        **_patient_choices(request),
        "quote": _quote(request, location, practitioner),
        "passes": can(request.user, Action.PASS_USE),
    }


def _quote(request, location: Location, practitioner) -> dict | None:
    """What the form's booking would be: its end time and price, and the package auto-select would
    use (passes.redeeming.quotes, the desk's rule). None until a treatment and a start are
    chosen."""
    treatment = _chosen(request, "treatment", Treatment)
    local = StartForm({"start": request.POST.get("start") or request.GET.get("start") or ""})
    if treatment is None or not local.is_valid():
        return None
    start = aware(local.cleaned_data["start"], location)
    end = (start + dt.timedelta(minutes=treatment.duration_minutes)).astimezone(
        ZoneInfo(location.time_zone)
    )
    patient = _chosen(request, "patient", Patient)
    quote = passes.visit_quote(
        patient=patient,
        treatment=treatment,
        visit_date=local.cleaned_data["start"].date(),
        location=location,
        start=start,
        online=False,
    )
    offered = (
        practitioner is None or treatments_offered(practitioner).filter(pk=treatment.pk).exists()
    )
    return {
        "treatment": treatment,
        "end": end.replace(tzinfo=None),
        "price": quote.price,
        "pays": quote.pays,
        "cover": quote.cover,
        "patient": patient,
        "offered": offered,
        "billed": (request.POST.get("package") or request.GET.get("package")) == "none",
    }


def _booked_panel(request, appointment: Appointment):
    """After booking from the panel: the new appointment's panel, and its practitioner's column of
    that day redrawn on the calendar (hx-swap-oob), so the desk stays on the schedule."""
    zone = ZoneInfo(appointment.location.time_zone)
    day = appointment.start.astimezone(zone).date()
    column = next(
        (
            c
            for c in _columns(request.user, appointment.location, [day])
            if c["practitioner"].pk == appointment.practitioner_id
        ),
        None,
    )
    return _panel(request, appointment, column=column)


@staff_required(Action.SCHEDULE_OWN)
def book(request):
    """Book from a free slot: in the schedule's panel (htmx) with a patient type-ahead, the
    treatments the practitioner offers, the end time, price and the package auto-select will use;
    saved without leaving the schedule. Without htmx (the patient tab's Book) the
    same form is a page."""
    location = _location(request)
    if location is None:
        raise Http404("No location is open.")
    practitioner = _chosen(request, "practitioner", StaffMember)
    initial = {
        "form_key": new_form_key(),
        "practitioner": practitioner,
        "treatment": request.GET.get("treatment"),
    }
    if request.GET.get("start"):
        initial["start"] = request.GET["start"]
    form = BookForm(
        request.POST or None,
        patients=Patient.objects.all(),
        initial=initial,
        passes=can(request.user, Action.PASS_USE),
        practitioner=practitioner,
    )
    htmx = bool(request.headers.get("HX-Request"))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        outcome, result = save_once(
            request,
            form,
            lambda: services.appointment_book(
                actor=request.user,
                treatment=data["treatment"],
                practitioner=data["practitioner"],
                location=location,
                start=aware(data["start"], location),
                patients=[data["patient"]],
                notes=data["notes"],
                pass_choice=None if data.get("package") == "none" else "auto",
            ),
        )
        if outcome == "denied":
            return result
        if outcome == "ok":
            messages.success(request, f"Booked {data['patient']} for {data['treatment']}.")
            if htmx:
                return _booked_panel(request, result)
        if outcome in ("ok", "repeat"):
            target = {"location": location.pk, "date": data["start"].date().isoformat()}
            if outcome == "ok":
                target["open"] = result.pk
            return redirect(f"{reverse('scheduling:schedule')}?{urlencode(target)}")
    context = _book_context(request, form, location, practitioner)
    if htmx:
        return render(request, "scheduling/_book.html", context)
    return render(request, "scheduling/book.html", context)


@staff_required(Action.SCHEDULE_OWN)
def book_patients(request):
    """The booking form's patient type-ahead (htmx): the chosen patient first, then the matches."""
    return render(request, "scheduling/_book_patients.html", _patient_choices(request))


@staff_required(Action.SCHEDULE_OWN)
def book_quote(request):
    """The booking form's end time, price and package (htmx), refreshed as the form changes."""
    location = _location(request)
    if location is None:
        raise Http404("No location is open.")
    practitioner = _chosen(request, "practitioner", StaffMember)
    return render(
        request,
        "scheduling/_book_quote.html",
        {
            "quote": _quote(request, location, practitioner),
            "passes": can(request.user, Action.PASS_USE),
        },
    )


def _sell_url(visit: Visit) -> str:
    """Where "Sell a package" goes: the checkout for this visit (it pre-selects the packages that
    cover it and applies the one sold), back to this panel afterwards. "Add items" goes there too
    with `&items=1`: nothing chosen yet, the covering packages still listed first."""
    checkout = reverse("billing:purchase_new", args=[visit.patient_id])
    return f"{checkout}?appointment={visit.appointment_id}"


def _unpaid_cycle_warning(live) -> str:
    """SPEC 6.3: a membership may cover a visit while its cycle is unpaid,
    with a visible warning."""
    cycle = getattr(live, "cycle", None)
    if cycle is None or cycle.invoice is None or cycle.invoice.balance_minor <= 0:
        return ""
    return passes.UNPAID_WARNING.format(balance=clinic_get().money(cycle.invoice.balance_minor))


def _coverage(request, visits: list, explain_for: int | None) -> list[dict]:
    """Per visit: the pass covering it (if any) and, for staff who may use passes, the passes that
    could cover it instead (passes.redeeming.redemption.explain) and whether it may be removed."""
    may_use = can(request.user, Action.PASS_USE)
    out = []
    for r in visits:
        if r.status == Status.CANCELLED:
            continue
        entry = {
            "visit": r,
            "secondary": r.role == Visit.Role.SECONDARY,
            "live": None,
            "options": [],
            "explain": None,
            "sell_url": _sell_url(r),
            "items_url": _sell_url(r) + "&items=1",
        }
        entries = (
            passes.explain(r)
            if may_use
            and (
                explain_for == r.pk
                or (not entry["secondary"] and r.status in (Status.BOOKED, Status.ARRIVED))
            )
            else []
        )
        if explain_for == r.pk and may_use:
            entry["explain"] = entries
        if not entry["secondary"]:
            entry["live"] = passes.visit_redemption(r)
            if r.status in (Status.BOOKED, Status.ARRIVED):
                entry["options"] = [e["pass"] for e in entries if e["can_cover"]]
        entry["removable"] = bool(
            entry["live"] and entry["live"].status == "reserved" and r.status == Status.BOOKED
        )
        entry["warning"] = _unpaid_cycle_warning(entry["live"])
        out.append(entry)
    return out


def _panel(
    request,
    appointment: Appointment,
    *,
    status: int = 200,
    forms: dict | None = None,
    refresh_grid: bool = False,
    explain_for: int | None = None,
    column: dict | None = None,
):
    """The appointment panel: a fragment for htmx, else a page around it."""
    try:
        appointment = appointment_get(actor=request.user, pk=appointment.pk)
    except NotFound:
        raise Http404
    zone = ZoneInfo(appointment.location.time_zone)
    visits = list(appointment.visits.select_related("patient", "invoice").all())
    coverage = _coverage(request, visits, explain_for)
    appointment.covered = any(
        c["live"] for c in coverage
    )  # the schedule block's icon (hx-swap-oob)
    calendar.place_appointment(appointment, zone)  # and its place on the calendar
    block = (
        calendar.appointment_block(
            appointment,
            url=reverse("scheduling:appointment", args=[appointment.pk]),
            names=", ".join(r.patient.full_name for r in visits if r.status != Status.CANCELLED),
            oob=True,
        )
        if refresh_grid
        else ""
    )
    local_start = appointment.start.astimezone(zone).replace(tzinfo=None)
    forms = forms or {}
    context = {
        "appointment": appointment,
        "visits": visits,
        "local_start": local_start,
        "local_end": appointment.end.astimezone(zone).replace(tzinfo=None),
        "clinic": clinic_get(),
        "invoices": [r for r in visits if r.invoice_id],
        "is_group": appointment.kind == "group",
        "takes_more": appointment.kind != "individual",
        "start_form": forms.get("start") or StartForm(initial={"start": local_start}),
        "join_form": forms.get("join") or JoinForm(),
        "class_form": forms.get("class") or ClassForm(),
        "fee": clinic_get().no_show_fee_minor,
        "coverage": coverage,
        "reserved": any(c["live"] and c["live"].status == "reserved" for c in coverage),
        "block": block,  # after a change, the schedule's block is swapped too (hx-swap-oob)
        # After booking, the practitioner's column of that day is redrawn (hx-swap-oob).
        "column_oob": calendar.column_body(column, oob=True) if column else "",
        # One per panel; each button's submit is claimed once (run_action once=).
        "form_key": new_form_key(),
    }
    template = (
        "scheduling/_panel.html"
        if request.headers.get("HX-Request")
        else "scheduling/appointment.html"
    )
    return render(request, template, context, status=status)


def _get(request, pk: int):
    try:
        return appointment_get(actor=request.user, pk=pk), None
    except NotFound:
        raise Http404
    except NotAllowed as exc:
        return None, not_allowed(request, exc.message)


@staff_required(Action.SCHEDULE_OWN)
def appointment(request, pk: int):
    found, denied = _get(request, pk)
    return denied or _panel(request, found)


def _act(request, pk: int, do, success: str):
    found, denied = _get(request, pk)
    if denied:
        return denied
    # Each panel button carries the panel's form key: a double click acts once.
    result, denied = run_action(request, lambda: do(found), success=success, once=True)
    if denied:
        return denied
    shown = result if isinstance(result, Appointment) else found
    if request.headers.get("HX-Request"):
        return _panel(request, shown, refresh_grid=True)
    return redirect("scheduling:appointment", pk=shown.pk)


def _patient_ids(request) -> list[int] | None:
    chosen = request.POST.get("patient")
    return [int(chosen)] if chosen and chosen.isdigit() else None


def _for_patients(service: str, success: str):
    """A status button whose service takes the chosen patients (`patient`; default everyone)."""

    @require_POST
    @staff_required(Action.SCHEDULE_OWN)
    def view(request, pk: int):
        return _act(
            request,
            pk,
            lambda a: getattr(arrival, service)(
                actor=request.user, appointment=a, patient_ids=_patient_ids(request)
            ),
            success,
        )

    view.__name__ = service
    return view


appointment_arrive = _for_patients("appointment_arrive", "Arrived; the invoice is created.")
appointment_unarrive = _for_patients(
    "appointment_unarrive", "Un-arrived; the arrival invoice is reversed."
)
appointment_no_show_undo = _for_patients(
    "appointment_no_show_undo", "No-show undone; back to booked."
)


@require_POST
@staff_required(Action.SCHEDULE_OWN)
def appointment_no_show(request, pk: int):
    charge = request.POST.get("charge_fee") == "1"
    use_pass = (
        request.POST.get("use_pass") != "0"
    )  # a covered visit uses its session unless told not to
    return _act(
        request,
        pk,
        lambda a: arrival.appointment_no_show(
            actor=request.user,
            appointment=a,
            charge_fee=charge,
            use_pass=use_pass,
            patient_ids=_patient_ids(request),
        ),
        "Marked as a no-show.",
    )


def _visit(appointment: Appointment, request) -> Visit:
    """The visit named by the `patient` field (POST or GET), else the first visit (the primary)."""
    chosen = request.POST.get("patient") or request.GET.get("patient")
    visits = appointment.visits.select_related("patient", "appointment")
    visit = (
        visits.filter(patient_id=int(chosen)).first()
        if chosen and chosen.isdigit()
        else visits.first()
    )
    if visit is None:
        raise NotFound("That patient is not in this appointment.")
    return visit


@require_POST
@staff_required(Action.PASS_USE)
def appointment_pass_use(request, pk: int):
    """Cover a visit with the chosen pass (or the auto-selected one when none is chosen); a pass
    already covering it is removed first, in the same transaction (Change)."""
    chosen = request.POST.get("pass", "")

    @transaction.atomic
    def do(appointment):
        visit = _visit(appointment, request)
        sold = None
        if chosen:
            sold = passes.Pass.objects.filter(pk=int(chosen) if chosen.isdigit() else 0).first()
            if sold is None:
                raise NotFound("That package does not exist any more; reload the appointment.")
        if passes.visit_redemption(visit) is not None:
            passes.pass_remove(actor=request.user, visit=visit)
        redemption = passes.pass_attach(actor=request.user, visit=visit, sold_pass=sold)
        if redemption is None:
            raise NotFound("No package can cover this visit; “Why not?” lists each one's reason.")
        return appointment

    return _act(request, pk, do, "The package now covers this visit.")


@require_POST
@staff_required(Action.PASS_USE)
def appointment_pass_remove(request, pk: int):
    return _act(
        request,
        pk,
        lambda a: passes.pass_remove(actor=request.user, visit=_visit(a, request)) and a,
        "Package removed; its session is free again.",
    )


@staff_required(Action.PASS_USE)
def appointment_pass_explain(request, pk: int):
    """Explain (SPEC 5.3): every pass of the row's patient with the reason it can or cannot cover
    this visit. An htmx fragment, else the appointment page with the list open."""
    found, denied = _get(request, pk)
    if denied:
        return denied
    try:
        visit = _visit(found, request)
    except NotFound:
        raise Http404
    if not request.headers.get("HX-Request"):
        return _panel(request, found, explain_for=visit.pk)
    return render(
        request, "scheduling/_passes.html", {"visit": visit, "entries": passes.explain(visit)}
    )


@require_POST
@staff_required(Action.SCHEDULE_OWN)
def appointment_cancel(request, pk: int):
    chosen = _patient_ids(request)

    def do(a):
        patient = Patient.objects.filter(pk=chosen[0]).first() if chosen else None
        return services.appointment_cancel(actor=request.user, appointment=a, patient=patient)

    return _act(request, pk, do, "Cancelled.")


def _form_action(request, pk: int, form_class, key: str, do, success: str):
    found, denied = _get(request, pk)
    if denied:
        return denied
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(
            request,
            "Check the form below: "
            + "; ".join(
                f"{form.fields[f].label or f}: {' '.join(e)}" if f in form.fields else " ".join(e)
                for f, e in form.errors.items()
            ),
        )
        if request.headers.get("HX-Request"):
            return _panel(request, found, forms={key: form})
        return redirect("scheduling:appointment", pk=pk)
    return _act(request, pk, lambda a: do(a, form.cleaned_data), success)


@require_POST
@staff_required(Action.SCHEDULE_OWN)
def appointment_copy(request, pk: int):
    return _form_action(
        request,
        pk,
        StartForm,
        "start",
        lambda a, d: services.appointment_copy(
            actor=request.user, appointment=a, start=aware(d["start"], a.location)
        ),
        "Copied to the new time; this is the new appointment.",
    )


@require_POST
@staff_required(Action.SCHEDULE_OWN)
def appointment_reschedule(request, pk: int):
    return _form_action(
        request,
        pk,
        StartForm,
        "start",
        lambda a, d: services.appointment_reschedule(
            actor=request.user, appointment=a, start=aware(d["start"], a.location)
        ),
        "Rescheduled.",
    )


@require_POST
@staff_required(Action.SCHEDULE_OWN)
def appointment_join(request, pk: int):
    return _form_action(
        request,
        pk,
        JoinForm,
        "join",
        lambda a, d: (
            services.appointment_join(actor=request.user, appointment=a, patient=d["patient"]) and a
        ),
        "Patient added.",
    )


@require_POST
@staff_required(Action.SCHEDULE_OWN)
def appointment_duplicate_as_class(request, pk: int):
    return _form_action(
        request,
        pk,
        ClassForm,
        "class",
        lambda a, d: services.appointment_duplicate_as_class(
            actor=request.user, appointment=a, treatment=d["treatment"]
        ),
        "Duplicated as a class; the group appointment is cancelled.",
    )


@staff_required(Action.SCHEDULE_OWN)
def patient_appointments(request, pk: int):
    patient = patient_get(pk)
    now = clock.now()
    visible = (
        Appointment.objects.filter(schedule_scope(request.user), visits__patient=patient)
        .select_related("treatment", "practitioner", "location")
        .distinct()
    )
    visits = {r.appointment_id: r for r in patient.visits.all()}

    def annotate(qs):
        out = list(qs)
        for a in out:
            a.visit = visits.get(a.pk)
            a.local_start = a.start.astimezone(ZoneInfo(a.location.time_zone)).replace(tzinfo=None)
        return out

    return render(
        request,
        "scheduling/patient_tab.html",
        {
            "patient": patient,
            "upcoming": annotate(visible.filter(start__gte=now).order_by("start", "pk")),
            "past": annotate(visible.filter(start__lt=now).order_by("-start", "-pk")[:100]),
        },
    )
