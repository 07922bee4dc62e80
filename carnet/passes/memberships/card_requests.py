"""Card update requests (issue 22 point 3): ask a member for a new autopay card by email.

Staff click "Request a new card" on the membership, or a hard decline asks automatically
(`card_update_request(sold_pass=…, actor=None, reason="hard_decline", note=…)`, callable inside
the decline's transaction: it only writes rows and queues the email after commit). The patient
gets a signed link (`ClockSigner`, its own salt: it works for nothing else) to a portal page
where they add a card through the configured gateway's card form; the card becomes the
membership's autopay card and every cycle still owed is charged at once, each through the card
attempt path (attempt recorded → gateway called outside any transaction → outcome recorded).

The link names one request, so it is scoped to that patient and that membership. It stops
working when it expires (CARD_UPDATE_LINK_DAYS), once a card was added through it, or when a
newer request replaced it — each with its own sentence for the page. At most one request per
membership is open (a partial unique constraint): the front desk sees "Card update requested
(sent …)" until a card is added, here or by staff choosing a card on the membership.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity, clock
from carnet.core.errors import CarnetError, Conflict, ValidationFailed
from carnet.core.mail import mail_queue
from carnet.core.permissions import Action, require
from carnet.core.signed_links import ClockSigner
from carnet.passes.charging import pass_charge_due
from carnet.passes.dunning import OWED, new_card_given
from carnet.passes.locks import lock_pass
from carnet.passes.models import CardUpdateRequest, Pass
from carnet.passes.online import card_keep_online, card_take_to_keep

SALT = "carnet.passes.card_update"
Reason = CardUpdateRequest.Reason


def link_days() -> int:
    return int(getattr(settings, "CARD_UPDATE_LINK_DAYS", 14))


class CardLinkError(CarnetError):
    """Why a card update link does not work (the page shows the sentence)."""

    status, code = 400, "card_link_invalid"


class CardLinkInvalid(CardLinkError):
    pass


class CardLinkExpired(CardLinkError):
    status, code = 410, "card_link_expired"


class CardLinkUsed(CardLinkError):
    status, code = 410, "card_link_used"


class CardLinkReplaced(CardLinkError):
    status, code = 410, "card_link_replaced"


def _open(qs):
    return qs.filter(completed_at__isnull=True, superseded_at__isnull=True)


# ---------------------------------------------------------------- asking


def card_update_token(req: CardUpdateRequest) -> str:
    return ClockSigner(salt=SALT).sign(f"{req.pk}.{req.nonce}")


def card_update_link(req: CardUpdateRequest, *, base_url: str) -> str:
    return base_url.rstrip("/") + reverse(
        "portal:card_update", kwargs={"token": card_update_token(req)}
    )


@transaction.atomic
def card_update_request(
    *, sold_pass: Pass, actor=None, reason: str = Reason.STAFF, note: str = "", base_url: str = ""
) -> CardUpdateRequest:
    """Email the membership's patient a link to add a new autopay card; a request still open is
    replaced (its link stops working). `actor` None: Carnet itself (a hard decline), which records
    the request even without an email address or a site address, so the front desk sees it.
    Staff (SELL) get a refusal they can act on instead. Joins the caller's transaction."""
    if actor is not None:
        require(actor, Action.SELL)
    if reason not in Reason.values:
        raise ValidationFailed(
            "Unknown reason for a card update request.", fields={"reason": ["Unknown."]}
        )
    sold = lock_pass(sold_pass.pk)
    if sold.kind != Pass.Kind.MEMBERSHIP:
        raise ValidationFailed(
            f"{sold.name} is not a membership.", fields={"pass_id": ["Not a membership."]}
        )
    if sold.status != Pass.Status.ACTIVE:
        raise Conflict(
            f"{sold.name} is {sold.get_status_display().lower()}; there is no card to update.",
            code=f"pass_{sold.status}",
        )
    patient = sold.patient
    base = (base_url or settings.SITE_URL or "").rstrip("/")
    if actor is not None and not patient.email:
        raise Conflict(
            f"{patient.full_name} has no email address, so the card update request cannot be "
            "emailed. Add one on their profile first.",
            code="no_email",
        )
    now = clock.now()
    _open(CardUpdateRequest.objects.filter(sold_pass=sold)).update(superseded_at=now)
    req = CardUpdateRequest(
        sold_pass=sold,
        patient=patient,
        reason=reason,
        note=(note or "")[:200],
        nonce=secrets.token_hex(16),
        emailed_to=patient.email if base else "",
        requested_by=actor if getattr(actor, "is_authenticated", False) else None,
        created_at=now,
        expires_at=now + dt.timedelta(days=link_days()),
    )
    try:
        with transaction.atomic():
            req.save(force_insert=True)
    except IntegrityError:  # a twin request (SQLite: no row lock) committed first: that one stands
        return _open(CardUpdateRequest.objects.filter(sold_pass=sold)).get()
    if req.emailed_to:
        _email(req, link=card_update_link(req, base_url=base))
    activity.record(
        actor=actor,
        verb="card update requested",
        obj=sold,
        after={
            "request": req.pk,
            "reason": reason,
            "to": req.emailed_to,
            "note": req.note,
            "expires_at": req.expires_at.isoformat(),
        },
    )
    return req


def _email(req: CardUpdateRequest, *, link: str) -> None:
    clinic, sold = clinic_get(), req.sold_pass
    owing = owing_minor(sold)
    mail_queue(
        to=req.emailed_to,
        subject=f"Please update your card for {sold.name} — {clinic.name}",
        template="passes/email/card_update_request.txt",
        reply_to=clinic.email,
        context={
            "name": req.patient.preferred_name or req.patient.first_name,
            "pass": sold,
            "clinic": clinic,
            "link": link,
            "declined": req.reason == Reason.HARD_DECLINE,
            "note": req.note,
            "owing": clinic.money(owing) if owing else "",
            "expires": _day(req.expires_at),
        },
    )


def owed_rows(sold: Pass):
    """The cycles still owed (not written off): what a card added through the link is charged."""
    return sold.pass_invoices.filter(OWED, written_off_at__isnull=True)


def owing_minor(sold: Pass) -> int:
    return sum(max(r.invoice.balance_minor, 0) for r in owed_rows(sold).select_related("invoice"))


# ---------------------------------------------------------------- what the front desk sees


def card_request_open(sold: Pass) -> CardUpdateRequest | None:
    return _open(sold.card_requests.all()).first()


def card_requests_open_for(patient) -> list[CardUpdateRequest]:
    return list(
        _open(
            CardUpdateRequest.objects.filter(
                sold_pass__patient=patient, sold_pass__status=Pass.Status.ACTIVE
            )
        )
        .select_related("sold_pass")
        .order_by("created_at")
    )


def card_requests_open_of(pks) -> list[CardUpdateRequest]:
    """The open requests of these memberships (at most one each)."""
    if not pks:
        return []
    return list(
        _open(CardUpdateRequest.objects.filter(sold_pass_id__in=list(pks)))
        .select_related("patient")
        .order_by("created_at", "pk")
    )


def card_request_label(req: CardUpdateRequest) -> str:
    """ "Card update requested (sent 2025-03-04)", or why it was not emailed."""
    day = _day(req.created_at)
    if req.emailed_to:
        return f"Card update requested (sent {day:%Y-%m-%d})"
    why = (
        "the patient has no email address"
        if not req.patient.email
        else "Carnet's site address (SITE_URL) is not set, so no link could be made"
    )
    return (
        f"New card needed since {day:%Y-%m-%d}: not emailed ({why}); use Request a new card after "
        "fixing that"
    )


def _day(moment: dt.datetime) -> dt.date:
    """The date of `moment` in the clinic's time zone."""
    return moment.astimezone(ZoneInfo(clinic_get().time_zone)).date()


def card_requests_close(*, sold: Pass, card, actor) -> None:
    """Staff chose a card on the membership: an open request is done
    (inside the caller's transaction)."""
    for req in _open(CardUpdateRequest.objects.filter(sold_pass=sold)):
        CardUpdateRequest.objects.filter(pk=req.pk, completed_at__isnull=True).update(
            completed_at=clock.now(), card=card, completed_key="staff"
        )
        activity.record(
            actor=actor,
            verb="card update request closed",
            obj=sold,
            after={"request": req.pk, "card": card.pk if card else None},
        )


# ---------------------------------------------------------------- the link


def card_request_from_token(token: str, *, for_done: bool = False) -> CardUpdateRequest:
    """The request a link names, still usable; else a CardLink* error with the page's sentence.
    `for_done`: the page after adding the card, which a used link may still show."""
    invalid = CardLinkInvalid(
        "This link is not valid. Check that you used the whole link from the email, or ask "
        "the clinic to send a new one."
    )
    try:
        value, _age = ClockSigner(salt=SALT).unsign_age(token)
        pk, nonce = value.split(".", 1)
        req = (
            CardUpdateRequest.objects.select_related("sold_pass", "patient", "card")
            .filter(pk=int(pk))
            .first()
        )
    except (signing.BadSignature, ValueError):
        raise invalid from None
    if req is None or not secrets.compare_digest(req.nonce, nonce):
        raise invalid
    if req.completed_at is not None:
        if for_done:
            return req
        raise CardLinkUsed(
            f"This link was already used: a card was added on "
            f"{_day(req.completed_at):%Y-%m-%d}. Nothing more is needed; contact the "
            "clinic if you want to change your card again."
        )
    if req.superseded_at is not None:
        raise CardLinkReplaced(
            "The clinic sent you a newer link since this one. Please use the link in the most "
            "recent email."
        )
    if clock.now() > req.expires_at:
        raise CardLinkExpired(
            f"This link has expired (links work for {link_days()} days). Ask the clinic to "
            "send a new one."
        )
    if req.sold_pass.status != Pass.Status.ACTIVE:
        raise CardLinkInvalid(
            f"{req.sold_pass.name} is no longer active, so no card is needed for it. Contact the "
            "clinic with any question."
        )
    return req


def card_entry_for(req: CardUpdateRequest) -> str:
    """What a card typed on this request's page may be used for (the Stripe SetupIntent's tag)."""
    return f"card-update:{req.pk}"


@dataclass
class CardUpdated:
    request: CardUpdateRequest
    charged: list[int] = field(default_factory=list)
    declined: list[int] = field(default_factory=list)
    repeat: bool = False


def card_update_complete(
    *,
    token: str,
    holder: str,
    idempotency_key: str,
    card_number: str = "",
    exp_month: int = 0,
    exp_year: int = 0,
    cvc: str = "",
    setup_intent: str = "",
) -> CardUpdated:
    """The patient adds a card through the link: it is kept on file for them, becomes the
    membership's autopay card (automatic mode), the request is done, and then — committed, outside
    any transaction — every cycle still owed is charged through the card attempt path, on-session
    (a bank's 3-D Secure check raises AuthenticationPending for the page). The same form key again
    charges nothing twice: it completes a charge waiting for the bank. Call it outside any
    transaction (the gateway keeps the card first)."""
    key = (idempotency_key or "").strip()[:80]
    if not key:
        raise ValidationFailed(
            "This form is missing its key; reload the page and try again.",
            fields={"form_key": ["Missing."]},
        )
    req = card_request_from_token(token, for_done=True)
    if req.completed_at is not None:
        if req.completed_key == key:  # the same submit again, e.g. back from the bank's check
            return _charge_owed(req, repeat=True)
        card_request_from_token(token)  # raises CardLinkUsed
    req = card_request_from_token(token)
    patient = req.patient
    stored, holder = card_take_to_keep(
        patient=patient,
        holder=holder,
        entry_for=card_entry_for(req),
        card_number=card_number,
        exp_month=exp_month,
        exp_year=exp_year,
        cvc=cvc,
        setup_intent=setup_intent,
    )
    user = patient.user if patient.user_id else None
    with transaction.atomic():
        sold = lock_pass(req.sold_pass_id)
        # The conditional update is the claim: of two submits (two windows),
        # exactly one adds its card.
        claimed = sold.status == Pass.Status.ACTIVE and CardUpdateRequest.objects.filter(
            pk=req.pk, completed_at__isnull=True, superseded_at__isnull=True
        ).update(completed_at=clock.now(), completed_key=key)
        if not claimed:
            req.refresh_from_db()
            if (
                req.completed_at is not None and req.completed_key == key
            ):  # a twin of this very submit
                return _charge_owed(req, repeat=True)
            card_request_from_token(token)  # the sentence for what happened meanwhile
            raise CardLinkUsed("This link was just used from another window.")
        card = card_keep_online(user=user, patient=patient, stored=stored, holder=holder)
        CardUpdateRequest.objects.filter(pk=req.pk).update(card=card)
        before = activity.snapshot(sold)
        sold.payment_mode, sold.card = Pass.PaymentMode.AUTOMATIC, card
        sold.save(update_fields=["payment_mode", "card"])
        today = clinic_today()
        new_card_given(
            sold, today=today
        )  # every cycle still owed is charged now, its retries afresh
        activity.record(
            actor=user,
            verb="card updated by patient",
            obj=sold,
            before=before,
            after={**activity.snapshot(sold), "request": req.pk},
        )
    return _charge_owed(req)


def _charge_owed(req: CardUpdateRequest, *, repeat: bool = False) -> CardUpdated:
    """Charge the cycles still owed, on-session: the patient is at the page, so a bank that asks
    them to confirm (3-D Secure) raises AuthenticationPending for the page to complete, and the same
    form posted again (same key: a repeat) reads that charge's outcome by its stored id — recorded
    once, whether the page, Stripe's webhook or reconciliation gets there first. A repeat finds
    nothing else due: what was charged is paid, and a declined cycle (a failed check too) waits for
    its retry or a new card."""

    run = pass_charge_due(sold_pass=req.sold_pass, on_session=True)
    if run.authenticate is not None:
        raise run.authenticate
    req.refresh_from_db()
    return CardUpdated(request=req, charged=run.charged, declined=run.declined, repeat=repeat)
