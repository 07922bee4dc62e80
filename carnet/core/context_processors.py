from .permissions import Action, can


def carnet(request):
    """The signed-in staff member (or patient) for the navigation bar."""
    user = getattr(request, "user", None)
    staff = getattr(user, "staff", None) if user is not None and user.is_authenticated else None
    patient = getattr(user, "patient", None) if user is not None and user.is_authenticated else None
    return {"current_staff": staff, "current_patient": patient}


def allowed(request):
    """`allowed.setup_manage` etc. in templates: which navigation and buttons to show."""

    user = getattr(request, "user", None)
    return {
        "allowed": {a.value: can(user, a) for a in Action}
        if user is not None and user.is_authenticated
        else {}
    }
