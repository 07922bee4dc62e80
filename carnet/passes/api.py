"""One pass at its address, whatever its kind (issue 24: a package and a membership are both a
`Pass`): read it and delete it at `/passes/{id}`. What one kind alone does sits below that address
in its room's API: `carnet.passes.packages.api` (expiry, refund, transfer, shares) and
`carnet.passes.memberships.api` (its terms and cycles, cancel, pause, payment, plan change…).
"""

from ninja import Router

from carnet.core.permissions import Action, require, staff_of
from carnet.core.schemas import patient_view
from carnet.passes.memberships.api import membership_out
from carnet.passes.memberships.schemas import MembershipOut
from carnet.passes.memberships.services import membership_delete
from carnet.passes.models import Pass
from carnet.passes.packages import schemas as s
from carnet.passes.packages.api import pass_for, pass_out
from carnet.passes.packages.ending import pass_delete

router = Router(tags=["passes"])


@router.get(
    "/passes/{pk}",
    response=s.PassOut | s.MyPassDetailOut,
    operation_id="pass_read",
    summary="A package with its items, instalments and use history",
    description=(
        "Staff get PassOut; a patient, their own or a dependant's package as MyPassDetailOut (no "
        "compensation values, payments or internal counters)."
    ),
)
def read(request, pk: int):
    sold = pass_for(request, pk)
    return sold if staff_of(request.auth) is not None else patient_view(s.MyPassDetailOut, sold)


@router.delete(
    "/passes/{pk}",
    response=s.PassOut | MembershipOut,
    operation_id="pass_delete",
    summary="Delete an unpaid, unused purchase and its invoices",
    description=(
        "A package answers PassOut, a membership MembershipOut; each kind keeps its own rules "
        "for what may be deleted."
    ),
)
def delete(request, pk: int):
    require(request.auth, Action.INVOICE_DELETE)
    sold = pass_for(request, pk)
    if sold.kind == Pass.Kind.MEMBERSHIP:  # its own rules (SPEC 6.4) and its own answer
        membership_delete(actor=request.auth, sold_pass=sold)
        return membership_out(pk)
    pass_delete(actor=request.auth, sold_pass=sold)
    return pass_out(pk)
