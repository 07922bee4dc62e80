"""Staff pages for patients (search, profile, family, portal login) and staff management."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from carnet.core.pages import run_action, save_form, staff_required
from carnet.core.permissions import Action, can

from . import invitations, login_throttle, selectors, services, two_factor
from .forms import (
    CommissionRateForm,
    FamilyLinkForm,
    PatientForm,
    ShiftForm,
    StaffCreateForm,
    StaffEditForm,
)
from .models import FamilyLink, Shift


@staff_required(Action.PATIENT_VIEW)
def patient_list(request):
    query = request.GET.get("q", "").strip()
    patients = selectors.patient_search(query=query, limit=100)
    template = (
        "people/_patient_rows.html"
        if request.headers.get("HX-Request")
        else "people/patient_list.html"
    )
    return render(request, template, {"patients": patients, "q": query})


@staff_required(Action.PATIENT_EDIT)
def patient_edit(request, pk: int | None = None):
    patient = selectors.patient_get(pk) if pk else None
    form = PatientForm(request.POST or None, instance=patient)

    def save(data):
        if patient:
            return services.patient_update(actor=request.user, patient=patient, data=data)
        return services.patient_create(actor=request.user, data=data)

    saved, denied = save_form(request, form, save, success=lambda p: f"Saved {p.full_name}.")
    if denied:
        return denied
    if saved:
        return redirect("people:patient", pk=saved.pk)
    return render(request, "people/patient_form.html", {"form": form, "patient": patient})


@staff_required(Action.PATIENT_VIEW)
def patient_profile(request, pk: int):
    patient = selectors.patient_get(pk)
    return render(
        request,
        "people/patient_profile.html",
        {
            "patient": patient,
            "family": selectors.patient_family(patient),
            "family_form": FamilyLinkForm(patient=patient),
            "can_edit": can(request.user, Action.PATIENT_EDIT),
        },
    )


@require_POST
@staff_required(Action.PATIENT_EDIT)
def family_add(request, pk: int):
    patient = selectors.patient_get(pk)
    form = FamilyLinkForm(request.POST, patient=patient)
    if not form.is_valid():
        messages.error(request, "Choose a relative and how they are related.")
        return redirect("people:patient", pk=pk)
    kind, relative = form.cleaned_data["kind"], form.cleaned_data["relative"]
    # "X is a dependant of Y" is stored as "Y is the guardian of X".
    guardian, dependant = (relative, patient) if kind == "dependant" else (patient, relative)
    _, denied = run_action(
        request,
        lambda: services.family_link_add(
            actor=request.user,
            patient=guardian,
            relative=dependant,
            kind=FamilyLink.Kind.GUARDIAN if kind == "dependant" else kind,
        ),
        success=f"Linked {patient.full_name} and {relative.full_name}.",
    )
    return denied or redirect("people:patient", pk=pk)


@require_POST
@staff_required(Action.PATIENT_EDIT)
def family_remove(request, pk: int, link_pk: int):
    link = get_object_or_404(FamilyLink, pk=link_pk)
    _, denied = run_action(
        request,
        lambda: services.family_link_remove(actor=request.user, link=link),
        success="Family link removed.",
    )
    return denied or redirect("people:patient", pk=pk)


@require_POST
@staff_required(Action.PATIENT_EDIT)
def portal_invite(request, pk: int):
    """Email the patient a link to choose their own portal password (staff never type it)."""
    patient = selectors.patient_get(pk)
    _, denied = run_action(
        request,
        lambda: invitations.patient_portal_invite(
            actor=request.user,
            patient=patient,
            base_url=settings.SITE_URL or request.build_absolute_uri("/"),
        ),
        success=(
            f"Invitation sent to {patient.email}: the link lets {patient.full_name} choose a "
            f"password for {settings.PORTAL_INVITATION_DAYS} days."
        ),
    )
    return denied or redirect("people:patient", pk=pk)


@staff_required(Action.STAFF_VIEW)
def staff_list(request):
    return render(
        request,
        "people/staff_list.html",
        {
            "staff": selectors.staff_list(),
            "can_manage": can(request.user, Action.STAFF_MANAGE),
        },
    )


@staff_required(Action.STAFF_MANAGE)
def staff_new(request):
    form = StaffCreateForm(request.POST or None)
    saved, denied = save_form(
        request,
        form,
        lambda d: services.staff_create(actor=request.user, **d),
        success=lambda s: f"Added {s.display_name}.",
    )
    if denied:
        return denied
    if saved:
        return redirect("people:staff_edit", pk=saved.pk)
    return render(request, "people/staff_form.html", {"form": form})


@staff_required(Action.STAFF_MANAGE)
def staff_edit(request, pk: int):
    member = selectors.staff_get(pk)
    form = StaffEditForm(request.POST or None, instance=member)
    saved, denied = save_form(
        request,
        form,
        lambda d: services.staff_update(actor=request.user, staff=member, data=dict(d)),
        success=lambda s: f"Saved {s.display_name}.",
    )
    if denied:
        return denied
    if saved:
        return redirect("people:staff_edit", pk=pk)
    return render(
        request,
        "people/staff_form.html",
        {
            "form": form,
            "member": member,
            "shift_form": ShiftForm(),
            "rate_form": CommissionRateForm(),
            "shifts": member.shifts.select_related("location"),
            "rates": member.commission_rates.select_related("income_category"),
            "login_wait": -(
                -int(login_throttle.login_wait_for_user(member.user).total_seconds()) // 60
            ),
            "two_factor_on": two_factor.authenticator(member.user) is not None,
            "two_factor_required": two_factor.two_factor_required(member.user),
            "can_reset_two_factor": can(request.user, Action.OWNERSHIP)
            and member.user_id != request.user.pk,
        },
    )


@require_POST
@staff_required(Action.STAFF_MANAGE)
def staff_unlock(request, pk: int):
    """Clear the failed log-ins of a staff member's login at once (an owner's:
    Account Owner only)."""
    member = selectors.staff_get(pk)
    _, denied = run_action(
        request,
        lambda: login_throttle.login_unlock(actor=request.user, user=member.user),
        success=f"{member.display_name} can log in again now.",
    )
    return denied or redirect("people:staff_edit", pk=pk)


@require_POST
@staff_required(Action.OWNERSHIP)
def staff_two_factor_reset(request, pk: int):
    """An Account Owner removes a staff member's authenticator and recovery codes (a lost phone)."""
    member = selectors.staff_get(pk)
    _, denied = run_action(
        request,
        lambda: two_factor.two_factor_reset(actor=request.user, staff=member),
        success=f"{member.display_name}'s second factor is reset: they must set up two-factor "
        "log-in again at their next log-in (if their access level needs it).",
    )
    return denied or redirect("people:staff_edit", pk=pk)


@require_POST
@staff_required(Action.STAFF_MANAGE)
def shift_add(request, pk: int):
    member = selectors.staff_get(pk)
    form = ShiftForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a location, a day, and start and end times.")
    else:
        d = form.cleaned_data
        run_action(
            request,
            lambda: services.shift_create(
                actor=request.user,
                staff=member,
                location_id=d["location"].pk,
                weekday=d["weekday"],
                start_time=d["start_time"],
                end_time=d["end_time"],
            ),
            success="Shift added.",
        )
    return redirect("people:staff_edit", pk=pk)


@require_POST
@staff_required(Action.STAFF_MANAGE)
def shift_remove(request, pk: int, shift_pk: int):
    shift = get_object_or_404(Shift, pk=shift_pk, staff_id=pk)
    run_action(
        request,
        lambda: services.shift_delete(actor=request.user, shift=shift),
        success="Shift removed.",
    )
    return redirect("people:staff_edit", pk=pk)


@require_POST
@staff_required(Action.STAFF_MANAGE)
def rate_set(request, pk: int):
    member = selectors.staff_get(pk)
    form = CommissionRateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an income category and a rate between 0 and 100.")
    else:
        run_action(
            request,
            lambda: services.commission_rate_set(
                actor=request.user,
                staff=member,
                income_category_id=form.cleaned_data["income_category"].pk,
                rate=form.cleaned_data["rate"],
            ),
            success="Commission rate saved.",
        )
    return redirect("people:staff_edit", pk=pk)
