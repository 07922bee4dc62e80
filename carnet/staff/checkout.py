"""One checkout (issue 20): what the desk sells one patient in one go (packages, memberships,
gift cards, products, another item) and the payment taken with it.

Each package keeps its own invoice (its instalments and refunds are traced to it), a membership
its cycles' (passes.memberships.services.membership_sell: the cycles begun by its start date are
invoiced at once, so its first cycle is paid in this payment); products and the other item share
one.
Payments fill the invoices in order, packages first, so a package is usable as soon as its price
is paid. A gift card has no invoice: it is made empty with the sale
(giftcards.services.gift_card_sell_begin) and loaded in full from the first way to pay, before that
payment fills any invoice; a card charge that fails discards it. Money taken at the desk (cash,
debit, …, gift card, credit) is written in the sale's transaction: a refused payment refuses the
sale too, and the desk fixes the form and submits again. A card goes to the gateway only after the
sale has committed (`checkout_charge_card`), never inside a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from django.db import transaction

from carnet.billing import card_attempts, payments
from carnet.billing.invoicing import LineInput, Totals, invoice_create, invoices_preview
from carnet.billing.models import Invoice, Payment
from carnet.clinic.selectors import money_text
from carnet.core.errors import CarnetError, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.giftcards.services import gift_card_redeem, gift_card_sell_begin, gift_card_sell_load
from carnet.passes.memberships.services import membership_invoice_lines, membership_sell
from carnet.passes.packages.selling import package_invoice_lines, package_sell
from carnet.passes.redeeming.redemption import pass_attach
from carnet.passes.selectors import pass_invoices, visit_redemption

CREDIT = "credit"  # a tender that applies the patient's existing account credit (not a new payment)


@dataclass(frozen=True)
class MembershipLine:
    template: object
    start_date: object = None  # None: today, in the clinic's zone
    payment_mode: str = (
        "manual"  # later cycles: "automatic" charges `card`, "manual" is paid at the desk
    )
    card: object | None = None


@dataclass(frozen=True)
class GiftCardLine:
    amount_minor: int
    code: str = ""  # blank: a fresh code
    recipient_name: str = ""
    recipient_email: str = ""


@dataclass(frozen=True)
class Cart:
    packages: list = field(default_factory=list)  # package templates, one sale each
    products: list = field(default_factory=list)  # (product, quantity)
    other: LineInput | None = None  # a described item with its own price
    sold_by: object | None = None  # staff credited with a package's upfront compensation
    memberships: list = field(default_factory=list)  # MembershipLine
    gift_cards: list = field(default_factory=list)  # GiftCardLine
    intro_override: bool = False  # sell intro offers the patient may not have (issue 23), logged

    def is_empty(self) -> bool:
        return not (
            self.packages or self.products or self.other or self.memberships or self.gift_cards
        )

    @property
    def gift_minor(self) -> int:
        return sum(g.amount_minor for g in self.gift_cards)


@dataclass
class Sale:
    invoices: list[Invoice]  # in the order payments fill them
    passes: list  # packages, then memberships
    gift_cards: list = field(default_factory=list)  # (GiftCard, amount to load)

    @property
    def gift_minor(self) -> int:
        return sum(amount for _, amount in self.gift_cards)

    @property
    def total_minor(self) -> int:
        return sum(i.total_minor for i in self.invoices) + self.gift_minor

    def due_now_minor(self) -> int:
        """What a payment taken now can pay: the invoices' balance and the gift cards' amounts."""
        return self.owing_minor() + self.gift_minor

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
        raise ValidationFailed(
            "Choose at least one package, membership, gift card or product, or describe "
            "another item."
        )
    with transaction.atomic():
        passes = [
            package_sell(
                actor=actor,
                patient=patient,
                template=t,
                sold_by=cart.sold_by,
                location=location,
                intro_override=cart.intro_override,
            )
            for t in cart.packages
        ]
        passes += [
            membership_sell(
                actor=actor,
                patient=patient,
                template=m.template,
                start_date=m.start_date,
                payment_mode=m.payment_mode,
                card=m.card,
                location=location,
                sold_by=cart.sold_by,
                intro_override=cart.intro_override,
            )
            for m in cart.memberships
        ]
        invoices = [invoice for sold in passes for invoice in pass_invoices(sold)]
        lines = _item_lines(cart)
        if lines:
            invoices.append(
                invoice_create(actor=actor, patient=patient, lines=lines, location=location)
            )
        gift_cards = [
            (
                gift_card_sell_begin(
                    actor=actor,
                    purchaser=patient,
                    amount_minor=g.amount_minor,
                    code=g.code,
                    recipient_name=g.recipient_name,
                    recipient_email=g.recipient_email,
                ),
                g.amount_minor,
            )
            for g in cart.gift_cards
        ]
    return Sale(invoices=invoices, passes=passes, gift_cards=gift_cards)


def _item_lines(cart: Cart) -> list[LineInput]:
    """Products and the other item: one invoice."""
    lines = [LineInput(product_id=p.pk, quantity=q) for p, q in cart.products]
    return lines + [cart.other] if cart.other is not None else lines


def checkout_totals(cart: Cart) -> Totals:
    """The cart's live totals, by billing's own invoice arithmetic
    (billing.invoicing.invoices_preview) on the invoices `checkout_sell` would issue;
    the gift cards are added to the total untaxed."""

    invoices = [lines for t in cart.packages for lines in package_invoice_lines(t)]
    invoices += [
        lines
        for m in cart.memberships
        for lines in membership_invoice_lines(m.template, start_date=m.start_date)
    ]
    if _item_lines(cart):
        invoices.append(_item_lines(cart))
    totals = invoices_preview(invoices=invoices)
    return replace(totals, total_minor=totals.total_minor + cart.gift_minor)


def checkout_pay_at_desk(
    *, actor, patient, sale: Sale, tenders: list[Tender], key: str, card_follows: bool = False
) -> list[Payment]:
    """Money taken in person, in the caller's transaction: each tender fills what is still owing,
    in order; the last one's excess (already confirmed by the desk) becomes credit. The gift cards
    sold are loaded from the last tender, the first way to pay (`gift_cards_from`, or raise if it
    cannot carry them), unless a card charge follows (`card_follows`): the card carries them."""
    if sale.gift_minor and not tenders and not card_follows:
        raise ValidationFailed("A gift card is paid when it is sold: enter the amount received.")
    done = []
    for n, tender in enumerate(tenders):
        last = n == len(tenders) - 1 and not card_follows
        gifts = gift_cards_from(sale, tender) if last else 0
        allocations = sale.fill(tender.amount_minor - gifts)
        if tender.method == CREDIT:
            for invoice, amount in allocations:
                payments.credit_apply(
                    actor=actor, patient=patient, invoice=invoice, amount_minor=amount
                )
        elif tender.method == Payment.Method.GIFT_CARD:
            done.append(
                gift_card_redeem(
                    actor=actor,
                    code=tender.gift_card_code,
                    patient=patient,
                    amount_minor=tender.amount_minor,
                    allocations=allocations,
                    reference=tender.reference,
                )
            )
        else:
            done.append(
                payments.payment_receive(
                    actor=actor,
                    patient=patient,
                    method=tender.method,
                    amount_minor=tender.amount_minor,
                    reference=tender.reference,
                    allocations=allocations,
                    idempotency_key=f"checkout-{key}-{n}",
                )
            )
            if gifts:
                for gift_card, amount in sale.gift_cards:
                    gift_card_sell_load(
                        actor=actor, gift_card=gift_card, payment=done[-1], amount_minor=amount
                    )
    return done


def gift_cards_from(sale: Sale, tender: Tender) -> int:
    """What of `tender` loads the sale's gift cards (all of them, or ValidationFailed)."""
    if not sale.gift_minor:
        return 0
    if tender.method in (CREDIT, Payment.Method.GIFT_CARD):
        raise ValidationFailed(
            "A gift card is paid with money: choose cash, a card or another way to pay first "
            "(account credit or a gift card can pay the rest as the second way)."
        )
    if tender.amount_minor < sale.gift_minor:
        raise ValidationFailed(
            f"The first way to pay carries the gift card's {money_text(sale.gift_minor)} in full; "
            f"it has only {money_text(tender.amount_minor)}."
        )
    return sale.gift_minor


def checkout_charge_card(
    *,
    actor,
    patient,
    sale: Sale,
    amount_minor: int,
    key: str,
    card=None,
    token: str = "",
    label: str = "",
    on_session: bool = False,
) -> Payment:
    """The card part of a checkout, once the sale (and any money taken at the desk) has committed:
    a card on file, or a card typed into the gateway's card form (`token`), charged as a card
    attempt (billing.card_attempts: recorded and committed, the gateway called outside any
    transaction, the payment recorded with its allocations). With gift cards in the sale the card is
    the first way to pay, so it carries them: the attempt's purpose "gift_card_sale" loads them once
    the charge is recorded and discards them if it fails. The same `key` again finds the first
    attempt and charges nothing more. A decline raises after the sale is kept:
    what is not paid stays owing. `on_session`: the card was typed here, its holder at the desk,
    so a bank asking them to confirm (3-D Secure) is answered on the page, even once it is kept on
    file for a membership's cycles."""

    require(actor, Action.PAYMENT_TAKE)
    if card is not None:
        payments.card_on_file_check(patient, card)
        label = str(card)
    gifts = gift_cards_from(
        sale, Tender(method=Payment.Method.CARD_GATEWAY, amount_minor=amount_minor)
    )
    context = {"reference": f"Card payment, {label}"} | ({"on_session": True} if on_session else {})
    if gifts:
        context["gift_cards"] = [[c.pk, amount] for c, amount in sale.gift_cards]
    attempt = card_attempts.charge_begin(
        request_key=f"checkout:{key}",
        purpose="gift_card_sale" if gifts else "payment",
        patient=patient,
        amount_minor=amount_minor,
        card=card,
        token="" if card is not None else token,
        card_label=label,
        allocations=sale.fill(amount_minor - gifts),
        context=context,
        actor=actor,
    )
    return card_attempts.charge_run(attempt).payment


def checkout_cover_visit(*, actor, passes: list, visit) -> tuple[object | None, str]:
    """Sold from an appointment: cover that visit with the first of the sale's `passes` that can (a
    reserved use; an arrived visit is redeemed after the fact), in the caller's transaction.

    Returns (the pass, "") or (None, why none could): a package not yet paid, or a visit already
    covered, leaves the sale as it is and says so; it is never a reason to refuse the sale. A visit
    one of these passes covers already (the same return posted twice) counts as covered."""

    live = visit_redemption(visit)
    if live is not None:
        mine = next((p for p in passes if p.pk == live.sold_pass_id), None)
        return (
            (mine, "")
            if mine
            else (None, f"the visit was already covered by {live.sold_pass.name}")
        )
    reasons = []
    for sold in passes:
        try:
            with transaction.atomic():  # a refused attach undoes only itself, not the sale
                pass_attach(actor=actor, visit=visit, sold_pass=sold)
            return sold, ""
        except CarnetError as exc:
            reasons.append(exc.message)  # it names the package
    return None, " ".join(reasons) or "no package was sold"
