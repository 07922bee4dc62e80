"""Portal invitations (SPEC 14, issue 18 point 2): staff send a link,
the patient chooses the password.

Staff never see or type a patient's password. The invitation is a signed link that expires after
PORTAL_INVITATION_DAYS; it carries a digest of the patient's email and login, so it works once
(accepting creates the login, which changes the digest) and stops working if the email changes.
No login exists until the patient accepts.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse

from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.crud import model_save
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.mail import mail_queue
from carnet.core.permissions import Action, require
from carnet.core.signed_links import ClockSigner

from .models import Patient
from .passwords import link_check, link_digest, link_read, passwords_match
from .services import login_create

User = get_user_model()
INVITE = "carnet.people.portal_invitation"


def _state(patient: Patient) -> str:
    return link_digest(INVITE, patient.pk, (patient.email or "").lower(), patient.user_id or "")


def _max_age() -> int:
    return settings.PORTAL_INVITATION_DAYS * 86400


def _check_invitable(patient: Patient) -> None:
    if patient.user_id:
        raise Conflict(
            f"{patient.full_name} already has a portal login.", code="portal_login_exists"
        )
    if not patient.email:
        raise ValidationFailed(
            "Add the patient's email first; it is their portal login.",
            fields={"email": ["Required for a portal login."]},
        )
    if User.objects.filter(username__iexact=patient.email).exists():
        raise Conflict(
            f"Another login already uses {patient.email}; give this patient their own email "
            "address.",
            code="login_taken",
            fields={"email": ["Another login uses this email."]},
        )


@transaction.atomic
def patient_portal_invite(*, actor, patient: Patient, base_url: str) -> str:
    """Email the patient a link to choose their portal password. Returns the link.
    Sending again sends a new link; an earlier one keeps working until one of them is used."""
    require(actor, Action.PATIENT_EDIT)
    _check_invitable(patient)
    clinic = clinic_get()
    token = ClockSigner(salt=INVITE).sign(f"{patient.pk}.{_state(patient)}")
    link = base_url.rstrip("/") + reverse("portal:invitation", kwargs={"token": token})
    days = settings.PORTAL_INVITATION_DAYS
    mail_queue(
        to=patient.email,
        subject=f"Your online account at {clinic.name}",
        reply_to=clinic.email,
        template="people/email/portal_invitation.txt",
        context={"patient": patient, "clinic": clinic, "link": link, "days": days},
    )
    activity.record(
        actor=actor,
        verb="portal_invited",
        obj=patient,
        after={"to": patient.email, "expires_at": (clock.now() + timedelta(days=days)).isoformat()},
    )
    return link


def invitation_patient(*, token: str, lock: bool = False) -> Patient:
    """The patient an invitation is for; AccountLinkInvalid (tampered,
    used) or AccountLinkExpired."""
    pk, state, age = link_read(token=token, purpose=INVITE)
    qs = Patient.objects.filter(pk=pk)
    patient = (qs.select_for_update() if lock else qs).first()
    link_check(
        matches=patient is not None and state == _state(patient),
        age=age,
        max_age_seconds=_max_age(),
    )
    return patient


@transaction.atomic
def portal_invitation_accept(*, token: str, password: str, confirm: str) -> Patient:
    """The patient chooses their password: their login (the email) is created and
    the link is used up."""
    patient = invitation_patient(token=token, lock=True)
    passwords_match(password, confirm)
    _check_invitable(patient)
    user = login_create(
        username=patient.email.lower(),
        email=patient.email,
        password=password,
        first_name=patient.first_name,
        last_name=patient.last_name,
    )
    return model_save(actor=user, obj=patient, data={"user": user}, verb="portal_login_enabled")
