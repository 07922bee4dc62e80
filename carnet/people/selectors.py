from django.db.models import Q, QuerySet

from carnet.core import statements
from carnet.core.errors import NotFound
from carnet.core.permissions import RULES, Action, require, staff_of

from .models import ApiToken, FamilyLink, Patient, StaffMember, digits
from .services import token_digest


def patient_search(*, query: str = "", limit: int = 50) -> QuerySet[Patient]:
    """Patients whose name, preferred name, email or phone matches every word of the query."""
    qs = Patient.objects.all()
    for word in query.split():
        cond = (
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(preferred_name__icontains=word)
            | Q(email__icontains=word)
        )
        if len(digits(word)) >= 3:
            cond |= Q(phone_digits__contains=digits(word))
        qs = qs.filter(cond)
    return qs[:limit]


def patient_get(pk: int) -> Patient:
    patient = Patient.objects.filter(pk=pk).first()
    if patient is None:
        raise NotFound(f"No patient with id {pk}.")
    return patient


def patient_for(actor, pk: int, *, action: Action, not_found: NotFound | None = None) -> Patient:
    """The patient `actor` may see: staff allowed `action` see any; a patient only themself and
    their dependants. Anything else is "not found", so ids cannot be probed. A caller looking up a
    record of the patient (an invoice, a pass) passes its own `not_found`, so that the answer about
    someone else's record names neither the record's owner nor their id."""
    if staff_of(actor) is not None:
        require(actor, action)
        return patient_get(pk)
    own = getattr(actor, "patient", None)
    if own is not None and any(p.pk == pk for p in patients_managed_by(own)):
        return patient_get(pk)
    raise not_found or NotFound(f"No patient with id {pk}.")


def patient_family(patient: Patient) -> list[tuple[str, Patient, FamilyLink]]:
    """Each relative with how they relate to this patient, e.g. ("Dependant", child, link)."""
    out = []
    for link in FamilyLink.objects.filter(Q(patient=patient) | Q(relative=patient)).select_related(
        "patient", "relative"
    ):
        mine = link.patient_id == patient.pk
        other = link.relative if mine else link.patient
        if link.kind == FamilyLink.Kind.SPOUSE:
            label = "Spouse"
        else:
            label = "Dependant" if mine else "Guardian"
        out.append((label, other, link))
    return out


def family_ids(patient: Patient) -> set[int]:
    """The ids of every patient linked to this one as family (either side of the link)."""
    links = FamilyLink.objects.filter(Q(patient=patient) | Q(relative=patient))
    return {pk for pair in links.values_list("patient_id", "relative_id") for pk in pair} - {
        patient.pk
    }


def patients_managed_by(patient: Patient) -> list[Patient]:
    """The patient and their dependants: whose records a portal user may see."""
    dependants = Patient.objects.filter(
        links_in__patient=patient, links_in__kind=FamilyLink.Kind.GUARDIAN
    )
    return [patient, *dependants]


def staff_list() -> QuerySet[StaffMember]:
    return StaffMember.objects.select_related("user").prefetch_related("locations")


def staff_who_manage_access(*, exclude=None) -> list[StaffMember]:
    """Who can change an access level or the billing switch: the names a refused staff member is
    told to ask."""
    level = RULES[Action.STAFF_MANAGE].level
    found = StaffMember.objects.filter(is_active=True, access_level__gte=level)
    if exclude is not None:
        found = found.exclude(pk=exclude.pk)
    return list(found.order_by("display_name", "pk"))


def staff_get(pk: int) -> StaffMember:
    staff = staff_list().filter(pk=pk).first()
    if staff is None:
        raise NotFound(f"No staff member with id {pk}.")
    return staff


# Compiled once per process (core.statements): every API request asks it.
_ACTIVE_TOKEN = statements.select(
    lambda token_hash: ApiToken.objects.select_related("staff__user").filter(
        token_hash=token_hash, revoked_at__isnull=True, staff__is_active=True
    ),
    token_hash=str,
)


def api_token_active(raw: str) -> ApiToken | None:
    """The unrevoked token of an active staff member whose secret is `raw`, with its user. The hash
    is unique: `.get()`, not `.first()`, whose ORDER BY costs every API request its compiling."""
    try:
        return _ACTIVE_TOKEN.get(token_hash=token_digest(raw))
    except ApiToken.DoesNotExist:
        return None


def api_token_for_request(request, raw: str) -> ApiToken | None:
    """`api_token_active`, read once per request: the idempotency middleware (whose keys these are)
    and the API's bearer auth both need it, and a second query on every API call is measurable."""
    cached = getattr(request, "_carnet_api_token", None)
    if cached is None or cached[0] != raw:
        cached = request._carnet_api_token = (raw, api_token_active(raw))
    return cached[1]
