"""Writes for staff and patients. Each service checks the actor's access, then logs the change."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q

from carnet.core import activity, bulk, clock
from carnet.core.crud import model_save
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.limits import date_check, text_check
from carnet.core.permissions import AccessLevel, Action, require, staff_of
from carnet.core.undo import imported_rows_remove

from .models import ApiToken, CommissionRate, FamilyLink, Patient, Shift, StaffMember, digits

User = get_user_model()


def password_validate(password: str, user=None) -> None:
    """The password rules (settings.AUTH_PASSWORD_VALIDATORS) as a
    ValidationFailed on `password`."""
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise ValidationFailed(
            "Please choose another password: " + " ".join(exc.messages),
            fields={"password": list(exc.messages)},
        ) from None


def email_check(email: str) -> str:
    """The email trimmed ("" when none); ValidationFailed if it is not an address."""
    email = (email or "").strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationFailed(
                f"“{email}” is not an email address.",
                fields={"email": ["Enter a valid email address."]},
            ) from None
    return email


def login_create(*, username: str, email: str, password: str, first_name="", last_name=""):
    email = email_check(email)
    username = username.strip()
    if not username:
        raise ValidationFailed(
            "Please enter a username.", fields={"username": ["This field is required."]}
        )
    for field, value in (
        ("username", username),
        ("first_name", first_name),
        ("last_name", last_name),
    ):
        text_check(
            value, field=field, limit=User._meta.get_field(field).max_length
        )  # PostgreSQL: a 500 otherwise
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(
            f"The login “{username}” is taken; choose another.",
            code="login_taken",
            fields={"username": ["This login is taken."]},
        )
    user = User(username=username, email=email, first_name=first_name, last_name=last_name)
    password_validate(password, user)
    user.set_password(password)
    user.save()
    return user


def _guard_owner(actor, *, level: int | None, target: StaffMember | None) -> None:
    """Only an Account Owner may grant Account Owner or change an owner's account."""
    touches_owner = level == AccessLevel.ACCOUNT_OWNER or (
        target is not None and target.access_level == AccessLevel.ACCOUNT_OWNER
    )
    if touches_owner:
        require(actor, Action.OWNERSHIP)


@transaction.atomic
def staff_create(
    *,
    actor,
    username: str,
    email: str,
    password: str,
    display_name: str,
    access_level: int,
    can_access_billing: bool = True,
    is_practitioner: bool = False,
    location_ids: list[int] | None = None,
) -> StaffMember:
    require(actor, Action.STAFF_MANAGE)
    _guard_owner(actor, level=access_level, target=None)
    user = login_create(username=username, email=email, password=password)
    staff = StaffMember(user=user)
    return model_save(
        actor=actor,
        obj=staff,
        data={
            "display_name": display_name,
            "access_level": access_level,
            "can_access_billing": can_access_billing,
            "is_practitioner": is_practitioner,
            "locations": location_ids or [],
        },
        aliases={"locations": "location_ids"},
    )


@transaction.atomic
def staff_update(*, actor, staff: StaffMember, data: dict) -> StaffMember:
    require(actor, Action.STAFF_MANAGE)
    _guard_owner(actor, level=data.get("access_level"), target=staff)
    data = dict(data)
    me = staff_of(actor)
    new_level = data.get("access_level", staff.access_level)
    if (
        me is not None
        and me.pk == staff.pk
        and isinstance(new_level, int)
        and new_level < staff.access_level
    ):
        raise NotAllowed(
            "You cannot lower your own access level; ask another Full Access user.",
            code="own_access_level",
        )
    email = data.pop("email", None)
    if email is not None:
        email = email_check(email)
    if email is not None and email != staff.user.email:
        activity.record(
            actor=actor,
            verb="email_changed",
            obj=staff,
            before={"email": staff.user.email},
            after={"email": email},
        )
        staff.user.email = email
        staff.user.save(update_fields=["email"])
    aliases = {}
    for many in ("locations", "treatments"):
        if f"{many[:-1]}_ids" in data:
            data[many] = data.pop(f"{many[:-1]}_ids")
            aliases[many] = f"{many[:-1]}_ids"
    aliases = aliases or None
    return model_save(actor=actor, obj=staff, data=data, aliases=aliases)


@transaction.atomic
def commission_rate_set(
    *, actor, staff: StaffMember, income_category_id: int, rate
) -> CommissionRate:
    require(actor, Action.STAFF_MANAGE)
    obj = CommissionRate.objects.filter(staff=staff, income_category_id=income_category_id).first()
    obj = obj or CommissionRate(staff=staff)
    return model_save(
        actor=actor, obj=obj, data={"income_category_id": income_category_id, "rate": rate}
    )


@transaction.atomic
def shift_create(
    *, actor, staff: StaffMember, location_id: int, weekday: int, start_time, end_time
) -> Shift:
    require(actor, Action.STAFF_MANAGE)
    if not staff.locations.filter(pk=location_id).exists():
        raise ValidationFailed(
            f"{staff} does not work at that location; add the location to them first.",
            fields={"location_id": ["Not one of this staff member's locations."]},
        )
    overlapping = Shift.objects.filter(
        staff=staff, weekday=weekday, start_time__lt=end_time, end_time__gt=start_time
    )
    if overlapping.exists():
        raise Conflict(
            f"This shift overlaps {overlapping.first()}; change the times.", code="shift_overlap"
        )
    return model_save(
        actor=actor,
        obj=Shift(staff=staff),
        data={
            "location_id": location_id,
            "weekday": weekday,
            "start_time": start_time,
            "end_time": end_time,
        },
    )


@transaction.atomic
def shift_delete(*, actor, shift: Shift) -> None:
    require(actor, Action.STAFF_MANAGE)
    activity.record(actor=actor, verb="deleted", obj=shift, before=activity.snapshot(shift))
    shift.delete()


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_token_create(*, actor, name: str) -> tuple[ApiToken, str]:
    """Returns the token and its secret, which is shown once and never stored."""
    require(actor, Action.API_TOKEN_OWN)
    raw = "crn_" + secrets.token_urlsafe(32)
    token = model_save(
        actor=actor,
        obj=ApiToken(staff=staff_of(actor)),
        data={
            "name": name,
            "token_hash": token_digest(raw),
            "prefix": raw[:10],
            "created_at": clock.now(),
        },
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, actor, token: ApiToken) -> ApiToken:
    require(actor, Action.API_TOKEN_OWN)
    if token.staff_id != staff_of(actor).pk:
        require(actor, Action.STAFF_MANAGE)
    return model_save(actor=actor, obj=token, data={"revoked_at": clock.now()}, verb="revoked")


PATIENT_FIELDS = (
    "first_name",
    "last_name",
    "preferred_name",
    "email",
    "phone",
    "date_of_birth",
    "address",
    "notes",
)


@transaction.atomic
def patient_create(*, actor, data: dict) -> Patient:
    require(actor, Action.PATIENT_EDIT)
    return model_save(actor=actor, obj=Patient(created_at=clock.now()), data=_patient_data(data))


@transaction.atomic
def patient_update(*, actor, patient: Patient, data: dict) -> Patient:
    require(actor, Action.PATIENT_EDIT)
    return model_save(actor=actor, obj=patient, data=_patient_data(data))


def _patient_data(data: dict) -> dict:
    unknown = set(data) - set(PATIENT_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown patient field: {', '.join(sorted(unknown))}.",
            fields={k: ["Unknown field."] for k in unknown},
        )
    data = {k: (v.strip() if isinstance(v, str) else v) for k, v in data.items()}
    born = data.get("date_of_birth")
    if isinstance(born, dt.date):
        date_check(born, field="date_of_birth")
        # The latest "today" on Earth (UTC+14), so a baby born today anywhere is never refused.
        if born > (clock.now() + dt.timedelta(hours=14)).date():
            raise ValidationFailed(
                "Please correct date of birth: it cannot be in the future.",
                fields={"date_of_birth": ["Cannot be in the future."]},
            )
    return data


@transaction.atomic
def family_link_add(*, actor, patient: Patient, relative: Patient, kind: str) -> FamilyLink:
    """Link two patients: `patient` is the guardian (or spouse) of `relative`."""
    require(actor, Action.PATIENT_EDIT)
    if patient.pk == relative.pk:
        raise ValidationFailed(
            "A patient cannot be linked to themselves.",
            fields={"relative_id": ["Choose another patient."]},
        )
    if kind not in FamilyLink.Kind.values:
        raise ValidationFailed(
            "Family link must be “guardian” or “spouse”.", fields={"kind": ["Unknown kind."]}
        )
    existing = FamilyLink.objects.filter(
        patient__in=[patient, relative], relative__in=[patient, relative]
    ).first()
    if existing:
        raise Conflict(
            f"These patients are already linked ({existing}); remove that link first.",
            code="already_linked",
        )
    return model_save(
        actor=actor, obj=FamilyLink(), data={"patient": patient, "relative": relative, "kind": kind}
    )


@transaction.atomic
def family_link_remove(*, actor, link: FamilyLink) -> None:
    require(actor, Action.PATIENT_EDIT)
    activity.record(actor=actor, verb="deleted", obj=link, before=activity.snapshot(link))
    link.delete()


@transaction.atomic
def patient_portal_enable(*, actor, patient: Patient, password: str) -> Patient:
    """Give a patient a portal login (their email is the login)."""
    require(actor, Action.PATIENT_EDIT)
    if patient.user_id:
        raise Conflict(f"{patient} already has a portal login.", code="portal_login_exists")
    if not patient.email:
        raise ValidationFailed(
            "Add the patient's email first; it is their portal login.",
            fields={"email": ["Required for a portal login."]},
        )
    user = login_create(
        username=patient.email.lower(),
        email=patient.email,
        password=password,
        first_name=patient.first_name,
        last_name=patient.last_name,
    )
    return model_save(actor=actor, obj=patient, data={"user": user}, verb="portal_login_enabled")


@transaction.atomic
def patient_sign_up(
    *, first_name: str, last_name: str, email: str, phone: str = "", password: str
) -> Patient:
    """A new patient signs themselves up online (booking page): a Patient record and a portal login,
    their email being the login. An email that already has a login must log in instead."""
    problems = {
        k: ["This field is required."]
        for k, v in (("first_name", first_name), ("last_name", last_name))
        if not v.strip()
    }
    if problems:
        raise ValidationFailed("Please enter your first and last name.", fields=problems)
    email = email_check(email)
    if not email:
        raise ValidationFailed(
            "Please enter your email; it is your login.",
            fields={"email": ["This field is required."]},
        )
    if User.objects.filter(username__iexact=email).exists():
        raise Conflict(
            "There is already an account with this email; please log in instead.",
            code="login_taken",
            fields={"email": ["Already registered."]},
        )
    patient = model_save(
        actor=None,
        obj=Patient(created_at=clock.now()),
        data=_patient_data(
            {"first_name": first_name, "last_name": last_name, "email": email, "phone": phone}
        ),
        verb="signed up online",
    )
    user = login_create(
        username=email.lower(),
        email=email,
        password=password,
        first_name=patient.first_name,
        last_name=patient.last_name,
    )
    return model_save(actor=user, obj=patient, data={"user": user}, verb="portal_login_enabled")


@transaction.atomic
def calendar_feed_token_reset(*, actor) -> str:
    """Give the actor's own calendar feed a new secret (the old URL stops working) and return it.
    Only its digest is stored, so the URL is shown once, like an API token."""
    require(actor, Action.SCHEDULE_OWN)
    staff = staff_of(actor)
    raw = secrets.token_urlsafe(32)
    StaffMember.objects.filter(pk=staff.pk).update(calendar_feed_digest=token_digest(raw))
    activity.record(actor=actor, verb="calendar_feed_reset", obj=staff)
    return raw


def staff_by_calendar_token(raw: str) -> StaffMember | None:
    if not raw:
        return None
    return StaffMember.objects.filter(
        calendar_feed_digest=token_digest(raw), is_active=True
    ).first()


def patients_import(*, actor, rows: list[dict], links: list[tuple[int, int, str]]) -> list[Patient]:
    """Patients brought in from the clinic's previous system (SPEC 15), inside the caller's
    transaction (an import checks every row first). `links` are (row index or -id of an existing
    patient, same for the relative, kind) once the patients exist."""
    now = clock.now()
    patients = bulk.insert(
        Patient,
        [Patient(created_at=now, phone_digits=digits(r.get("phone", "")), **r) for r in rows],
    )

    def pk(ref: int) -> int:
        return patients[ref].pk if ref >= 0 else -ref

    made = bulk.insert(
        FamilyLink,
        [FamilyLink(patient_id=pk(a), relative_id=pk(b), kind=kind) for a, b, kind in links],
    )
    activity.record_many(actor=actor, verb="imported", objs=[*patients, *made])
    return patients


def patients_in_use(pks: list[int]) -> list[str]:
    """Why each of these imported patients can no longer be taken out again."""
    used = (
        Q(invoices__isnull=False)
        | Q(payments__isnull=False)
        | Q(passes__isnull=False)
        | Q(visits__isnull=False)
        | Q(gift_cards_bought__isnull=False)
        | Q(cards__isnull=False)
        | Q(user__isnull=False)
    )
    problems = []
    for part in bulk.chunks(pks):
        for patient in Patient.objects.filter(pk__in=part).filter(used).distinct().order_by("pk"):
            problems.append(
                f"{patient} (patient #{patient.pk}) has packages, billing, appointments or a "
                "portal login now (undo later imports first)"
            )
    return problems


def patients_remove_imported(*, actor, pks: list[int]) -> None:
    """Undo imported patients (caller's transaction), refused if any has been used since."""

    for part in bulk.chunks(pks):
        FamilyLink.objects.filter(Q(patient_id__in=part) | Q(relative_id__in=part)).delete()
    imported_rows_remove(actor=actor, model=Patient, pks=pks, in_use=patients_in_use)
