"""One checkout (issue 20): what the desk sells one patient in one go (packages, products,
another item) and the payment taken with it.

Each package keeps its own invoice (its instalments and refunds are traced to it); products and
the other item share one. Payments fill the invoices in order, packages first, so a package is
usable as soon as its price is paid. Money taken at the desk (cash, debit, …, gift card, credit)
is written in the sale's transaction: a refused payment refuses the sale too, and the desk fixes
the form and submits again. A card goes to the gateway only after the sale has committed
(`checkout_charge_card`), never inside a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from carnet.billing import payments
from carnet.billing.invoicing import LineInput, invoice_create
from carnet.billing.models import Invoice, Payment
from carnet.core.errors import CarnetError, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.passes.selectors import pass_invoices
from carnet.passes.selling import package_sell

CREDIT = "credit"  # a tender that applies the patient's existing account credit (not a new payment)


@dataclass(frozen=True)
class Cart:
    packages: list = field(default_factory=list)   # package templates, one sale each
    products: list = field(default_factory=list)   # (product, quantity)
    other: LineInput | None = None                 # a described item with its own price
    sold_by: object | None = None                   # staff credited with a package's upfront compensation

    def is_empty(self) -> bool:
        return not (self.packages or self.products or self.other)


@dataclass
class Sale:
    invoices: list[Invoice]  # in the order payments fill them
    passes: list

    @property
    def total_minor(self) -> int:
        return sum(i.total_minor for i in self.invoices)

    def owing_minor(self) -> int:
        return sum(i.balance_minor for i in self._fresh())

    def _fresh(self) -> list[Invoice]:
        fresh = Invoice.objects.in_bulk([i.pk for i in self.invoices])
        return [fresh[i.pk] for i in self.invoices]

    def fill(self, amount_minor: int) -> list[tuple[Invoice, int]]:
        """Allocations of `amount_minor` over what is still owing, in order; what is left over is
        not allocated (it becomes credit)."""
        out, left = [], amount_minor
        for invoice in self._fresh():
            take = min(left, invoice.balance_minor)
            if take > 0:
                out.append((invoice, take))
                left -= take
        return out


@dataclass(frozen=True)
class Tender:
    """One way the patient pays part of the sale."""

    method: str
    amount_minor: int
    reference: str = ""
    gift_card_code: str = ""
    card: object | None = None


def checkout_sell(*, actor, patient, cart: Cart, location=None) -> Sale:
    """Sell the cart (inside the caller's transaction if there is one)."""
    if cart.is_empty():
        raise ValidationFailed("Choose at least one package or product, or describe another item.")
    with transaction.atomic():
        passes = [package_sell(actor=actor, patient=patient, template=t, sold_by=cart.sold_by, location=location)
                  for t in cart.packages]
        invoices = [invoice for sold in passes for invoice in pass_invoices(sold)]
        lines = [LineInput(product_id=p.pk, quantity=q) for p, q in cart.products]
        if cart.other is not None:
            lines.append(cart.other)
        if lines:
            invoices.append(invoice_create(actor=actor, patient=patient, lines=lines, location=location))
    return Sale(invoices=invoices, passes=passes)


def checkout_pay_at_desk(*, actor, patient, sale: Sale, tenders: list[Tender], key: str) -> list[Payment]:
    """Money taken in person, in the caller's transaction: each tender fills what is still owing,
    in order; the last one's excess (already confirmed by the desk) becomes credit."""
    done = []
    for n, tender in enumerate(tenders):
        allocations = sale.fill(tender.amount_minor)
        if tender.method == CREDIT:
            for invoice, amount in allocations:
                payments.credit_apply(actor=actor, patient=patient, invoice=invoice, amount_minor=amount)
        elif tender.method == Payment.Method.GIFT_CARD:
            from carnet.giftcards.services import giftcard_redeem  # gift cards build on billing, not the reverse

            done.append(giftcard_redeem(actor=actor, code=tender.gift_card_code, patient=patient,
                                        amount_minor=tender.amount_minor, allocations=allocations,
                                        reference=tender.reference))
        else:
            done.append(payments.payment_receive(
                actor=actor, patient=patient, method=tender.method, amount_minor=tender.amount_minor,
                reference=tender.reference, allocations=allocations, idempotency_key=f"checkout-{key}-{n}"))
    return done


def checkout_charge_card(*, actor, patient, sale: Sale, amount_minor: int, key: str, card=None,
                         token: str = "", label: str = "") -> Payment:
    """The card part of a checkout, once the sale (and any money taken at the desk) has committed:
    a card on file, or a card typed into the gateway's card form (`token`), charged as a card attempt
    (billing.card_attempts: recorded and committed, the gateway called outside any transaction, the
    payment recorded with its allocations). The same `key` again finds the first attempt and charges
    nothing more. A decline raises after the sale is kept: what is not paid stays owing."""
    from carnet.billing import card_attempts

    if card is not None:
        return payments.payment_receive(actor=actor, patient=patient, method=Payment.Method.CARD_GATEWAY,
                                        amount_minor=amount_minor, allocations=sale.fill(amount_minor), card=card,
                                        reference=f"Card payment, {card}", idempotency_key=f"checkout-{key}")
    require(actor, Action.PAYMENT_TAKE)
    attempt = card_attempts.charge_begin(
        request_key=f"checkout:{key}", purpose="payment", patient=patient, amount_minor=amount_minor, token=token,
        card_label=label, allocations=sale.fill(amount_minor), context={"reference": f"Card payment, {label}"},
        actor=actor)
    return card_attempts.charge_run(attempt).payment


def checkout_cover_visit(*, actor, sale: Sale, visit) -> tuple[object | None, str]:
    """Sold from an appointment: cover that visit with the first package of the sale that can (a
    reserved use; an arrived visit is redeemed after the fact), in the caller's transaction.

    Returns (the pass, "") or (None, why none could): a package not yet paid, or a visit already
    covered, leaves the sale as it is and says so; it is never a reason to refuse the sale."""
    from carnet.passes.redemption import pass_attach
    from carnet.passes.selectors import visit_redemption

    live = visit_redemption(visit)
    if live is not None:
        return None, f"the visit was already covered by {live.sold_pass.name}"
    reasons = []
    for sold in sale.passes:
        try:
            with transaction.atomic():  # a refused attach undoes only itself, not the sale
                pass_attach(actor=actor, visit=visit, sold_pass=sold)
            return sold, ""
        except CarnetError as exc:
            reasons.append(exc.message)  # it names the package
    return None, " ".join(reasons) or "no package was sold"
