"""What selling a pass online from the patient portal shares, for a package bought there
(packages.online) and a membership signed up for (memberships.online): who buys (the patient, or a
guardian for a dependant), what the clinic offers online, the form's key, and keeping a card typed
online on file.
"""

from __future__ import annotations

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import NotFound, ValidationFailed
from carnet.gateway.services import card_keep_at_gateway, card_on_file_new, card_tokenize
from carnet.passes.models import Pass, PassTemplate
from carnet.people.models import Patient
from carnet.people.selectors import patients_managed_by


def _buyer(user) -> Patient:
    patient = getattr(user, "patient", None) if getattr(user, "is_authenticated", False) else None
    if patient is None:
        raise NotFound("Log in to your patient account to buy a package online.")
    return patient


def _managed_ids(user) -> set[int]:
    return {p.pk for p in patients_managed_by(_buyer(user))}


def offered_online(kind: str):
    if not clinic_get().online_sales_enabled:
        return PassTemplate.objects.none()
    return (
        PassTemplate.objects.filter(
            kind=kind, sold_online=True, archived=False, items__isnull=False
        )
        .distinct()
        .order_by("name", "pk")
    )


def offered_get(kind: str, pk: int) -> PassTemplate:
    template = offered_online(kind).filter(pk=pk).first()
    if template is None:
        raise NotFound(f"No {PassTemplate.Kind(kind).label.lower()} with id {pk} is sold online.")
    return template


def portal_passes(user):
    """The passes of the portal user and their dependants (deleted ones hidden), newest first."""
    return (
        Pass.objects.filter(patient_id__in=_managed_ids(user))
        .exclude(status=Pass.Status.DELETED)
        .select_related("patient")
        .order_by("-purchased_at", "-pk")
    )


def portal_pass_get(user, pk: int) -> Pass:
    sold = portal_passes(user).filter(pk=pk).first()
    if sold is None:
        raise NotFound(f"No package with id {pk}.")
    return sold


def buyer_and_key(user, patient, idempotency_key: str) -> tuple[Patient, str]:
    """The portal user buying for `patient` (themself or a dependant;
    anyone else is not found), and the form key."""
    buyer = _buyer(user)
    if patient is None or patient.pk not in _managed_ids(user):
        raise NotFound("No such patient.")
    key = (idempotency_key or "").strip()
    if not 1 <= len(key) <= 100:
        raise ValidationFailed(
            "This form is missing its key; reload the page and try again.",
            fields={"form_key": ["Missing."]},
        )
    return buyer, key


def portal_entry_for(user) -> str:
    """What a card typed by this portal user may pay (the Stripe SetupIntent's tag)."""
    return f"portal-user:{user.pk}"


def card_keep_online(*, user, patient: Patient, stored, holder: str):
    """Keep the card the patient just entered on file for them. gateway.services.card_file_stored
    requires a staff actor with PAYMENT_TAKE; here the patient is the actor and the card is theirs
    (or their dependant's), so the row is made the same way without that check."""
    return card_on_file_new(
        user=user, patient=patient, stored=stored, holder=holder, verb="card_stored_online"
    )


def card_take_to_keep(
    *,
    patient: Patient,
    holder: str,
    entry_for: str,
    card_number: str = "",
    exp_month: int = 0,
    exp_year: int = 0,
    cvc: str = "",
    setup_intent: str = "",
):
    """A card typed online that is to stay on file for `patient` (an autopay card): kept at the
    gateway (a bad card stops here) and, at one with customers (Stripe), attached to the patient's.
    Call it outside any transaction: no database transaction waits on the network. Returns
    (the gateway's StoredCard, the name on the card) for `card_keep_online`."""

    holder = (holder or "").strip()
    if not holder or len(holder) > 120:
        raise ValidationFailed(
            "Please enter the name on the card (at most 120 characters).",
            fields={"holder": ["Enter the name on the card."]},
        )
    stored = card_tokenize(
        number=card_number,
        exp_month=exp_month,
        exp_year=exp_year,
        cvc=cvc,
        holder=holder,
        setup_intent=setup_intent,
        entry_for=entry_for,
    )
    card_keep_at_gateway(patient=patient, stored=stored)
    return stored, holder
