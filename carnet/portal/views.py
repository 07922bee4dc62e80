"""The patient portal ("My Account"): a patient sees their own record and their dependants'."""

from functools import wraps

from django.shortcuts import redirect, render
from django.urls import reverse

from carnet.clinic.selectors import clinic_get
from carnet.people.selectors import patient_family, patients_managed_by
from carnet.staff.views import login_view


def patient_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        patient = getattr(request.user, "patient", None) if request.user.is_authenticated else None
        if patient is None:
            return redirect(f"{reverse('portal:login')}?next={request.get_full_path()}")
        return view(request, patient, *args, **kwargs)

    return wrapper


def portal_login(request):
    return login_view(request, kind="patient", template="portal/login.html", home="portal:home")


@patient_required
def home(request, patient):
    return render(request, "portal/home.html", {
        "patient": patient, "clinic": clinic_get(),
        "family": patient_family(patient), "dependants": patients_managed_by(patient)[1:],
    })
