"""Intro offers (issue 23): a template sold only to new patients and/or once per patient.

A new patient has no arrived visit and no pass bought (or brought in by an import) before; a
deleted pass was a mistake and does not count. Selling at the desk, the API and the portal all
refuse with the reason; staff with Administrative/All Billing may sell it anyway by asking for
an override, which the activity log records on the pass sold.

The check reads the patient's passes and then the sale writes one: two sales of intro offers to
one patient at the same moment could both pass it, so the sale's check locks the patient's row
first (PostgreSQL; SQLite's IMMEDIATE transactions already serialise writers). The lock comes
before any invoice or pass lock the sale takes (CONVENTIONS 5: patient → invoice → pass).
"""

from __future__ import annotations

from carnet.core import activity
from carnet.core.errors import Conflict
from carnet.core.permissions import Action, require
from carnet.passes.models import Pass, PassTemplate
from carnet.people.models import Patient
from carnet.scheduling.models import Status, Visit


def is_intro_offer(template: PassTemplate) -> bool:
    return bool(template.new_patients_only or template.once_per_patient)


def _lock_patient(patient) -> None:
    list(Patient.objects.select_for_update(of=("self",)).filter(pk=patient.pk))


def intro_refusal(template: PassTemplate, patient) -> tuple[str, str] | None:
    """(code, sentence) when `template` is an intro offer `patient` may not have;
    None when they may."""

    passes = Pass.objects.filter(patient_id=patient.pk).exclude(status=Pass.Status.DELETED)
    if template.once_per_patient and passes.filter(template=template).exists():
        return (
            "intro_once_per_patient",
            f"{template.name} is an intro offer sold once per patient, and {patient.full_name} "
            "already had it.",
        )
    if template.new_patients_only:
        came = Visit.objects.filter(patient_id=patient.pk, status=Status.ARRIVED).exists()
        if came or passes.exists():
            why = (
                "has already visited the clinic"
                if came
                else "has bought a package or membership before"
            )
            return (
                "intro_new_patients_only",
                f"{template.name} is an intro offer for new patients only, "
                f"and {patient.full_name} {why}.",
            )
    return None


def intro_check(
    *, actor, template: PassTemplate, patient, override: bool = False, lock: bool = True
) -> str | None:
    """Refuse an intro offer the patient may not have, unless `override` is asked for by staff
    allowed to (then the refusal's sentence is returned, for `intro_override_record`).

    Inside the sale's transaction `lock` (the default) holds the patient's row until it commits;
    `lock=False` is for a look outside any transaction (before a card is charged), which the sale
    repeats under the lock."""
    if lock and is_intro_offer(template):
        _lock_patient(patient)
    refusal = intro_refusal(template, patient)
    if refusal is None:
        return None
    code, sentence = refusal
    if not override:
        raise Conflict(
            f"{sentence} Staff with Administrative/All Billing access can sell it anyway "
            "with an override.",
            code=code,
        )
    require(actor, Action.INTRO_OFFER_OVERRIDE)
    return sentence


def intro_override_record(*, actor, sold: Pass, sentence: str | None) -> None:
    """Write an intro-offer override to the activity log, on the pass it sold."""
    if sentence:
        activity.record(
            actor=actor, verb="intro_offer_overridden", obj=sold, after={"reason": sentence}
        )
