"""Arrive, un-arrive and no-show: the visits that bill, each through the billing services.

Individual → one invoice; group → one invoice to the primary listing the secondary clients who
arrived; class → one invoice per arrived participant. Each invoice hangs on the Visit
that caused it, so undoing always reverses exactly what was billed (billing.invoice_delete
reverses the ledger).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from carnet.billing.invoicing import LineInput, invoice_create, invoice_delete
from carnet.clinic.models import Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, atomic, statements
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.permissions import Action

from . import locks
from .access import schedule_require
from .coverage import passes
from .models import Appointment, Status, Visit
from .selectors import with_visits

Kind = Treatment.Kind
Role = Visit.Role
# The scope check (access.schedule_require) already ran; billing only needs to know who it is.
_BILLING_AS = Action.SCHEDULE_OWN


# Compiled once per process (core.statements): every status change reads everyone in the
# appointment, the primary first, with the appointment locked (FOR UPDATE of its row only) in the
# same statement. PostgreSQL re-reads only the locked row after waiting for it: the visits may be
# as they were before the wait, which is why `_set` changes a visit only from the status read.
_EVERYONE_LOCKED = statements.select(
    lambda appointment: (
        Visit.objects.filter(appointment_id=appointment)
        .select_related(*(f"appointment__{join}" for join in locks.JOINS), "patient")
        .select_for_update(of=("appointment",))
        .order_by("booked_at", "pk")
    ),
    appointment=int,
)


def _chosen(visits: list[Visit], patient_ids: list[int] | None, *, status: str) -> list[Visit]:
    if patient_ids is not None:
        unknown = set(patient_ids) - {r.patient_id for r in visits}
        if unknown:
            raise ValidationFailed(
                f"Patient {min(unknown)} is not in this appointment.",
                fields={"patient_ids": ["Not in this appointment."]},
            )
    return [
        r
        for r in visits
        if r.status == status and (patient_ids is None or r.patient_id in patient_ids)
    ]


def _invoice(actor, appointment: Appointment, visit: Visit, line: LineInput, writes: dict) -> None:
    """Invoice the visit; its status writes (of `_writes`, taken out of `writes`) go with the
    invoice, in the invoice's own statement on PostgreSQL: the invoice counter's row, locked
    from there until commit, waits one round trip less."""
    date = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone)).date()
    then = statements.Then(writes.pop(visit.pk), key="invoice")
    visit.invoice = invoice_create(
        actor=actor,
        patient=visit.patient,
        lines=[line],
        location=appointment.location,
        staff=appointment.practitioner,
        invoice_date=date,
        action=_BILLING_AS,
        known=[appointment.treatment],  # read with the appointment, under its lock
        then=then,
    )
    _written(appointment, then.changed)


def _bill(
    actor,
    appointment: Appointment,
    visit: Visit,
    line: LineInput,
    reserved,
    writes: dict,
    *,
    by_no_show: bool = False,
) -> None:
    """Post the use a pass reserved for the visit (`reserved`, or None), then invoice it: covered,
    the line is its additional charge. The invoice comes last because its number holds the
    clinic-wide invoice counter locked until commit; every other arrival waits on that lock,
    so it is held briefly."""
    line = _post_use(reserved, line, by_no_show=by_no_show)
    _invoice(actor, appointment, visit, line, writes)


def _post_use(reserved, line: LineInput, *, by_no_show: bool = False) -> LineInput:
    """Post the use a pass reserved for a visit (`reserved`, or None): the visit's line, covered if
    a use was reserved."""
    line = passes.line_for(reserved, line)
    passes.billed(reserved, by_no_show=by_no_show)
    return line


def _visit_line(appointment: Appointment, secondaries: list[Visit] = ()) -> LineInput:
    description = appointment.treatment.name
    if secondaries:
        description += " — group with " + ", ".join(r.patient.full_name for r in secondaries)
    return LineInput(
        treatment_id=appointment.treatment_id,
        staff_id=appointment.practitioner_id,
        description=description,
    )


def _reverse(actor, visit: Visit, what: str) -> None:
    invoice = visit.invoice
    if invoice is not None and invoice.deleted_at is None:
        invoice.refresh_from_db()
        if invoice.applied_minor:
            raise Conflict(
                f"{invoice} for {visit.patient} has {clinic_get().money(invoice.applied_minor)} "
                "of payments applied. Unapply those payments on the patient's Billing tab "
                f"first (they become credit), then {what} again.",
                code="invoice_has_payments",
            )
        invoice_delete(actor=actor, invoice=invoice, action=_BILLING_AS)
    visit.invoice = None
    passes.unbilled(visit)  # a used session is reserved again


def _start(actor, appointment: Appointment) -> tuple[Appointment, list[Visit]]:
    """The appointment read afresh under its lock (one status change at a time per appointment),
    with everyone in it, the primary first, once `actor` may work on it: only the caller's
    `appointment.pk` is used (the API reads the rows here only)."""
    everyone = _EVERYONE_LOCKED.all(appointment=appointment.pk)
    if everyone:
        appointment = everyone[0].appointment
        for visit in everyone:
            visit.appointment = appointment  # one instance, as appointment.visits would have
    else:  # a class nobody has joined, or no such appointment
        try:
            appointment = locks.lock_appointment(appointment.pk)
        except Appointment.DoesNotExist:
            raise NotFound(f"No appointment with id {appointment.pk}.") from None
    schedule_require(
        actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id
    )
    if appointment.status == Status.CANCELLED:
        raise Conflict(
            "This appointment is cancelled. Copy it to a new time to book it again.",
            code="cancelled",
        )
    return appointment, everyone


# Compiled once per process (core.statements): what every status change writes.
_VISIT_SET = statements.update(
    lambda pk, was, status, invoice: (
        Visit.objects.filter(pk=pk, status=was),
        {"status": status, "invoice_id": invoice},
    ),
    pk=int,
    was=str,
    status=str,
    invoice=int,
)
_APPOINTMENT_SET = statements.update(
    lambda pk, status: (Appointment.objects.filter(pk=pk), {"status": status}),
    pk=int,
    status=str,
)


def _writes(
    appointment: Appointment, everyone: list[Visit], visits, status: str, *, was: str
) -> dict[int, list]:
    """`visits` (of `everyone`) move to `status`: set on the instances, and each visit's writes
    returned by its key, to send with its invoice (`_invoice`) or by `_set`. Each is
    `visit.save(update_fields=["status", "invoice"])` compiled, only from the status `was` read:
    a visit another request changed meanwhile refuses the whole change (409, `_written`).
    Individual and group appointments follow their (primary) patient, written with the first
    visit's change; a class session stays booked."""
    for visit in visits:
        visit.status = status
    follows = appointment.kind != Kind.CLASS
    if follows:
        appointment.status = everyone[0].status
    writes = {}
    for n, visit in enumerate(visits):
        runs = [(_VISIT_SET, dict(pk=visit.pk, was=was, status=status, invoice=visit.invoice_id))]
        if follows and n == 0:
            runs.append((_APPOINTMENT_SET, dict(pk=appointment.pk, status=appointment.status)))
        writes[visit.pk] = runs
    return writes


def _written(appointment: Appointment, changed: list[int]) -> None:
    """What one visit's writes changed (with the appointment's, second, if it follows)."""
    if not changed[0]:
        raise Conflict(
            "Someone changed this appointment a moment ago. Reload it and try again.",
            code="appointment_changed",
        )
    if len(changed) > 1 and not changed[1]:
        raise Appointment.DoesNotExist(f"Appointment {appointment.pk} is gone.")


def _set(appointment: Appointment, everyone: list[Visit], writes: dict) -> None:
    """The `_writes` no invoice took, sent (one statement each on PostgreSQL). The visits as
    changed are the answer's (no read back)."""
    for runs in writes.values():
        _written(appointment, statements.updates_together(*runs))
    with_visits(appointment, known=everyone)


@atomic.service
def appointment_arrive(
    *, actor, appointment: Appointment, patient_ids: list[int] | None = None
) -> Appointment:
    """Mark patients arrived and bill them. Group: `patient_ids` are the secondary clients who came
    (default all); class: the participants who came (default all booked)."""
    appointment, everyone = _start(actor, appointment)
    before = activity.snapshot(appointment)
    if appointment.kind == Kind.CLASS:
        visits = _chosen(everyone, patient_ids, status=Status.BOOKED)
        if not visits:
            raise Conflict("Nobody chosen is still booked in this class.", code="not_booked")
        bills = [(visit, _visit_line(appointment)) for visit in visits]
    else:
        if appointment.status != Status.BOOKED:
            raise Conflict(
                f"This appointment is {appointment.get_status_display().lower()}, not booked. "
                "Un-arrive it, or undo the no-show, first.",
                code="not_booked",
            )
        _chosen(
            everyone, patient_ids, status=Status.BOOKED
        )  # refuses patients not in the appointment
        booked = _chosen(everyone, None, status=Status.BOOKED)
        primary = booked[0]
        came = [r for r in booked[1:] if patient_ids is None or r.patient_id in patient_ids]
        bills = [(primary, _visit_line(appointment, came))]  # a group uses the primary's pass
        visits = [primary, *came]
    with activity.together():  # the invoices' rows and the arrival's: one statement
        # The uses are posted first, so that the invoices, whose number holds the clinic-wide
        # counter locked until commit, come last, with the statuses (of rows locked already).
        lines = [_post_use(passes.reservation(visit), line) for visit, line in bills]
        writes = _writes(appointment, everyone, visits, Status.ARRIVED, was=Status.BOOKED)
        for (visit, _), line in zip(bills, lines):
            _invoice(actor, appointment, visit, line, writes)
        _set(appointment, everyone, writes)
        activity.record(
            actor=actor,
            verb="arrived",
            obj=appointment,
            before=before,
            after=activity.snapshot(appointment),
        )
    return appointment


@atomic.service
def appointment_unarrive(
    *, actor, appointment: Appointment, patient_ids: list[int] | None = None
) -> Appointment:
    """Back to booked, deleting the arrival invoice(s); refused while a payment
    is applied to one."""
    appointment, everyone = _start(actor, appointment)
    before = activity.snapshot(appointment)
    visits = _chosen(
        everyone, patient_ids if appointment.kind == Kind.CLASS else None, status=Status.ARRIVED
    )
    if not visits:
        raise Conflict(
            "Nobody chosen has arrived, so there is nothing to un-arrive.", code="not_arrived"
        )
    for visit in visits:
        _reverse(actor, visit, "un-arrive")
    _set(
        appointment,
        everyone,
        _writes(appointment, everyone, visits, Status.BOOKED, was=Status.ARRIVED),
    )
    activity.record(
        actor=actor,
        verb="un-arrived",
        obj=appointment,
        before=before,
        after=activity.snapshot(appointment),
    )
    return appointment


def _fee_line(appointment: Appointment, fee: int) -> LineInput:
    local = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone))
    return LineInput(
        description=f"No-show fee: {appointment.treatment.name} on {local:%Y-%m-%d %H:%M}",
        unit_price_minor=fee,
        income_category_id=appointment.treatment.income_category_id,
        staff_id=appointment.practitioner_id,
        tax_ids=[],
    )


@atomic.service
def appointment_no_show(
    *,
    actor,
    appointment: Appointment,
    charge_fee: bool = True,
    use_pass: bool = True,
    patient_ids: list[int] | None = None,
) -> Appointment:
    """Mark a no-show, charging the clinic's no-show fee (if set and `charge_fee`) to the patient
    (group: the primary). A visit a pass covers uses its session instead (billing the additional
    charge) unless `use_pass` is False, which frees the session and charges the fee (SPEC 5.3).
    Marking what is already a no-show changes nothing (a double click bills once); undoing is
    its own action, appointment_no_show_undo."""
    appointment, everyone = _start(actor, appointment)
    before = activity.snapshot(appointment)
    if appointment.kind == Kind.CLASS:
        ids = patient_ids
    else:
        ids = None
        if appointment.status == Status.ARRIVED:
            raise Conflict(
                "This appointment is arrived. Un-arrive it first to mark a no-show.", code="arrived"
            )
        if appointment.status == Status.NO_SHOW:
            return appointment  # already marked: a repeat does nothing
    visits = _chosen(everyone, ids, status=Status.BOOKED)
    if not visits:
        if _chosen(everyone, ids, status=Status.NO_SHOW):
            return appointment  # already marked: a repeat does nothing
        raise Conflict(
            "Nobody chosen is booked, so nobody can be marked as a no-show.", code="not_booked"
        )
    fee = clinic_get().no_show_fee_minor if charge_fee else 0
    billed = visits if appointment.kind == Kind.CLASS else visits[:1]  # group: the primary pays
    writes = _writes(appointment, everyone, visits, Status.NO_SHOW, was=Status.BOOKED)
    for visit in billed:
        reserved = passes.reservation(visit) if use_pass else None
        if reserved is not None:
            line = _visit_line(appointment)
            _bill(actor, appointment, visit, line, reserved, writes, by_no_show=True)
            continue
        passes.voided([visit])
        if fee:
            _invoice(actor, appointment, visit, _fee_line(appointment, fee), writes)
    _set(appointment, everyone, writes)
    activity.record(
        actor=actor,
        verb="no-show",
        obj=appointment,
        before=before,
        after=activity.snapshot(appointment),
    )
    return appointment


@atomic.service
def appointment_no_show_undo(
    *, actor, appointment: Appointment, patient_ids: list[int] | None = None
) -> Appointment:
    """Back to booked, deleting the no-show's fee invoice (or reversing the session it used).
    Undoing what is not a no-show (any more) changes nothing, so a repeat is harmless."""
    appointment, everyone = _start(actor, appointment)
    before = activity.snapshot(appointment)
    missed = _chosen(
        everyone, patient_ids if appointment.kind == Kind.CLASS else None, status=Status.NO_SHOW
    )
    if not missed:
        return appointment
    for visit in missed:
        _reverse(actor, visit, "undo the no-show")
    _set(
        appointment,
        everyone,
        _writes(appointment, everyone, missed, Status.BOOKED, was=Status.NO_SHOW),
    )
    activity.record(
        actor=actor,
        verb="no-show undone",
        obj=appointment,
        before=before,
        after=activity.snapshot(appointment),
    )
    return appointment
