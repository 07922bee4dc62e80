"""What a receipt says about passes (SPEC 9.2, 9.11): which package covered the visit an invoice
bills, how many sessions are left after it, and the visit's share of the prepaid price; and how
pages name what a pass holds and what is left of it (issue 23: uses, or money for a value package).

Billing's receipt imports this lazily (billing never imports passes at module level). A selector:
it reads and never writes.
"""

from __future__ import annotations

from carnet.clinic.selectors import money_text

from .models import PassInvoice, Redemption


def _gross(net_part: int, *, net_minor: int, price_minor: int) -> int:
    """`net_part` of a pass's pre-tax value expressed in what the patient paid (tax included),
    rounded half up. Without tax on the pass, price and net are equal and nothing is rounded."""
    if net_minor <= 0 or net_part <= 0:
        return 0
    if net_minor == price_minor:
        return net_part
    return (2 * net_part * price_minor + net_minor) // (2 * net_minor)


def prepaid_share_minor(redemption: Redemption) -> int:
    """The visit's allocated prepaid value as paid by the patient: the session value the pass
    recognised when the visit was posted (price ÷ quantity, before tax), grossed up by the pass's
    own tax. Computed cumulatively over the pass's posted uses in posting order, so a taxed
    package's shares add up to its price to the cent once every session is used."""
    sold = redemption.sold_pass
    if sold.net_minor == sold.price_minor:
        return redemption.value_minor
    before = 0
    for pk, value in (
        Redemption.objects.filter(sold_pass_id=sold.pk, status=Redemption.Status.POSTED)
        .order_by("posted_at", "pk")
        .values_list("pk", "value_minor")
    ):
        if pk == redemption.pk:
            break
        before += value
    terms = {"net_minor": sold.net_minor, "price_minor": sold.price_minor}
    return _gross(before + redemption.value_minor, **terms) - _gross(before, **terms)


def coverage_for_invoice(invoice) -> list[dict]:
    """The posted redemptions of the visit(s) this invoice bills, one dict each:
    pass_name, treatment, remaining_after (None for unlimited passes and value packages),
    value_left_after_minor and drawn_minor (a value package's balance after the visit and the amount
    it drew; None and 0 otherwise), value_minor (the session's
    pre-tax value), prepaid_minor (its share of the price paid, tax included),
    additional_charge_minor and by_no_show."""
    if invoice is None or getattr(invoice, "deleted_at", None):
        return []
    redemptions = (
        Redemption.objects.filter(visit__invoice_id=invoice.pk, status=Redemption.Status.POSTED)
        .select_related("sold_pass", "item__treatment")
        .order_by("visit_id", "pk")
    )
    return [
        {
            "pass_name": r.sold_pass.name,
            "treatment": r.item.treatment.name,
            "remaining_after": r.remaining_after,
            # A value package: its balance after this visit (issue 23).
            "value_left_after_minor": r.value_left_after,
            "drawn_minor": r.drawn_minor,
            "value_minor": r.value_minor,
            "prepaid_minor": prepaid_share_minor(r),
            "additional_charge_minor": r.additional_charge_minor,
            "by_no_show": r.by_no_show,
        }
        for r in redemptions
    ]


def sale_terms_for_invoice(invoice) -> list[dict]:
    """The expiry terms of the pass(es) this invoice sells (issue 23): name, kind, expiry date and
    the disclosure line kept on the pass at sale, for the sale receipt."""
    if invoice is None:
        return []
    rows = PassInvoice.objects.filter(invoice_id=invoice.pk).select_related("sold_pass")
    return [
        {
            "pass_name": r.sold_pass.name,
            "kind": r.sold_pass.kind,
            "expires_on": r.sold_pass.expires_on,
            "disclosure": r.sold_pass.expiry_disclosure,
        }
        for r in rows
    ]


def holds_text(obj) -> str:
    if getattr(obj, "face_value_minor", None) is not None:
        return f"{money_text(obj.face_value_minor)} of treatments"
    quantity = getattr(obj, "quantity", None)
    if quantity:
        return f"{quantity} use{'s' if quantity != 1 else ''}"
    return "unlimited uses"


def left_text(sold) -> str:
    if sold.face_value_minor is not None:
        return f"{money_text(max(sold.value_left, 0))} left"
    if sold.remaining is None:
        return "unlimited"
    return f"{sold.remaining} left"
