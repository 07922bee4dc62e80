"""The checkout form (Billing → New purchase): what is sold, where, and how it is paid."""

from django import forms
from django.db.models import Case, When

from carnet.billing.forms import NEW_CARD, CreditQuestion, NewCardFields, location_choice
from carnet.billing.invoicing import LineInput
from carnet.billing.models import Payment
from carnet.clinic.models import IncomeCategory, Product
from carnet.core.forms import DayField, MoneyField
from carnet.gateway.selectors import cards_for_patient
from carnet.passes.memberships.forms import DATE, template_label
from carnet.passes.models import Pass, PassTemplate
from carnet.passes.setup.forms import intro_override_add
from carnet.people.models import StaffMember

from .checkout import CREDIT, Cart, GiftCardLine, MembershipLine, Tender

PACKAGE_SLOTS, PRODUCT_SLOTS = 2, 3
LATER = "later"
M = Payment.Method
CARD_METHODS = (
    M.CARD_GATEWAY.value,
    NEW_CARD,
)  # charged once the sale has committed, never inside it
DESK_METHODS = [
    (m.value, m.label) for m in (M.CASH, M.DEBIT, M.CARD_MANUAL, M.ETRANSFER, M.CHEQUE, M.OTHER)
]
OTHER_TENDERS = DESK_METHODS + [(M.GIFT_CARD.value, "Gift card"), (CREDIT, "Account credit")]
METHODS = (
    [(LATER, "Later (it stays owing on the Billing tab)")]
    + DESK_METHODS
    + [(M.CARD_GATEWAY.value, "Card on file"), (NEW_CARD, "New card")]
    + [(M.GIFT_CARD.value, "Gift card"), (CREDIT, "Account credit")]
)


class CheckoutForm(CreditQuestion, NewCardFields):
    form_key = forms.CharField(widget=forms.HiddenInput)
    # Sold from an appointment (its panel's "Sell a package"): the visit the new package covers.
    appointment = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)
    sold_by = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="Sold by",
        empty_label="No one",
        help_text="Credited with a package's upfront compensation.",
    )
    membership = forms.ModelChoiceField(
        queryset=None, required=False, label="Membership", empty_label="—"
    )
    membership_start = DayField(
        required=False,
        label="Starts",
        widget=DATE,
        help_text="Blank: today. Its first cycle is paid with this purchase.",
    )
    membership_payment = forms.ChoiceField(
        label="Later cycles",
        required=False,
        initial=Pass.PaymentMode.MANUAL,
        choices=[
            (Pass.PaymentMode.MANUAL, "Paid at the desk"),
            (
                Pass.PaymentMode.AUTOMATIC,
                "Charged automatically to the card (on file, or the new card)",
            ),
        ],
    )
    new_gift_card_code = forms.CharField(
        required=False, max_length=40, label="Code", help_text="Blank: a new code is made."
    )
    new_gift_card_recipient = forms.CharField(required=False, max_length=120, label="Recipient")
    new_gift_card_email = forms.EmailField(required=False, label="Recipient's email")
    other_description = forms.CharField(required=False, max_length=200, label="Other item")
    other_category = forms.ModelChoiceField(
        IncomeCategory.objects.all(), required=False, label="Income category"
    )
    method = forms.ChoiceField(choices=METHODS, initial=M.CASH.value, label="Payment")
    reference = forms.CharField(
        required=False, max_length=120, help_text="Cheque number, last digits, …"
    )
    gift_card_code = forms.CharField(required=False, max_length=40, label="Gift card code")
    card = forms.ModelChoiceField(
        queryset=None, required=False, label="Card on file", empty_label="Choose a card"
    )
    # Split: a second way to pay part of it, taken at the desk (the first may be a card).
    method_2 = forms.ChoiceField(
        choices=[("", "—")] + OTHER_TENDERS, required=False, label="Also paid by"
    )

    def __init__(
        self, *args, clinic, patient, staff=None, covering=(), stripe_entry_for: str = "", **kwargs
    ):
        """`covering`: the templates that could cover the appointment sold from (listed first,
        marked). `stripe_entry_for`: the new card is typed into Stripe.js's own field (the
        SetupIntent's tag), so this form has no card number, expiry or CVC field at all."""
        super().__init__(*args, **kwargs)
        self.new_card_setup(stripe_entry_for)
        self.fields["card"].queryset = cards_for_patient(patient)
        self.fields["card"].label_from_instance = lambda c: (
            f"{c.brand_label} •••• {c.last4} ({c.exp_month:02d}/{c.exp_year})"
        )
        location_choice(self, staff=staff)
        intro_override_add(self, staff)
        covers = {t.pk for t in covering}
        templates = (
            PassTemplate.objects.filter(kind=PassTemplate.Kind.PACKAGE, archived=False)
            .annotate(covers=Case(When(pk__in=covers, then=0), default=1))
            .order_by("covers", "name")
        )

        def label(t):
            mark = " (covers this visit)" if t.pk in covers else ""
            return f"{t.name} — {clinic.money(t.price_minor)}{mark}"

        for i in range(PACKAGE_SLOTS):
            self.fields[f"package_{i}"] = forms.ModelChoiceField(
                templates, required=False, label="Package", empty_label="—"
            )
            self.fields[f"package_{i}"].label_from_instance = label
        products = Product.objects.filter(is_active=True).order_by("name")
        for i in range(PRODUCT_SLOTS):
            self.fields[f"product_{i}"] = forms.ModelChoiceField(
                products, required=False, label="Product", empty_label="—"
            )
            self.fields[f"product_{i}"].label_from_instance = lambda p: (
                f"{p.name} — {clinic.money(p.price_minor)}"
            )
            self.fields[f"quantity_{i}"] = forms.IntegerField(
                min_value=1, max_value=1000, initial=1, required=False, label="Qty"
            )
        self.fields["membership"].queryset = PassTemplate.objects.filter(
            kind=PassTemplate.Kind.MEMBERSHIP, archived=False
        ).order_by("name")
        self.fields["membership"].label_from_instance = template_label(clinic)
        self.fields["new_gift_card_amount"] = MoneyField(
            currency=clinic.currency, required=False, label="Gift card amount"
        )
        self.fields["other_price"] = MoneyField(
            currency=clinic.currency, required=False, label="Price"
        )
        self.fields["amount"] = MoneyField(
            currency=clinic.currency,
            required=False,
            label="Amount received",
            help_text="Blank: the whole total (less the second amount).",
        )
        self.fields["amount_2"] = MoneyField(
            currency=clinic.currency, required=False, label="Second amount"
        )
        self.fields["sold_by"].queryset = StaffMember.objects.filter(is_active=True).order_by(
            "display_name"
        )

    def package_fields(self):
        return [self[f"package_{i}"] for i in range(PACKAGE_SLOTS)]

    def membership_fields(self):
        return [self[n] for n in ("membership", "membership_start", "membership_payment")]

    def new_gift_card_fields(self):
        return [
            self[n]
            for n in (
                "new_gift_card_amount",
                "new_gift_card_code",
                "new_gift_card_recipient",
                "new_gift_card_email",
            )
        ]

    def payment_fields(self):
        return [self[n] for n in ("method", "amount", "card", "reference", "gift_card_code")]

    def split_fields(self):
        return [self["method_2"], self["amount_2"]]

    def product_rows(self):
        return [(self[f"product_{i}"], self[f"quantity_{i}"]) for i in range(PRODUCT_SLOTS)]

    def clean(self):
        data = super().clean()
        other = data.get("other_description") or data.get("other_price") is not None
        if other and not (
            data.get("other_description")
            and data.get("other_price") is not None
            and data.get("other_category")
        ):
            raise forms.ValidationError(
                "For another item give its description, price and income category."
            )
        if data.get("new_gift_card_amount") is not None and data["new_gift_card_amount"] <= 0:
            self.add_error("new_gift_card_amount", "Enter an amount greater than zero.")
        gift = data.get("new_gift_card_amount") or any(
            data.get(n)
            for n in ("new_gift_card_code", "new_gift_card_recipient", "new_gift_card_email")
        )
        if gift and data.get("new_gift_card_amount") is None:
            self.add_error("new_gift_card_amount", "Enter the gift card's amount.")
        elif gift and data.get("method") in (LATER, CREDIT, M.GIFT_CARD):
            self.add_error(
                "method",
                "A gift card is paid with money when it is sold: choose cash, a card or "
                "another way to pay.",
            )
        if (
            data.get("membership")
            and data.get("membership_payment") == Pass.PaymentMode.AUTOMATIC
            and not data.get("card")
            and data.get("method") != NEW_CARD
        ):
            self.add_error(
                "membership_payment",
                "Automatic payment charges a card: choose a card on file, or pay "
                "by a new card (it is kept on file for the cycles).",
            )
        if not self.errors and self.cart().is_empty():
            raise forms.ValidationError(
                "Choose at least one package, membership, gift card or product, or "
                "describe another item."
            )
        methods = (data.get("method"), data.get("method_2"))
        if M.GIFT_CARD in methods and not (data.get("gift_card_code") or "").strip():
            self.add_error("gift_card_code", "Enter the gift card's code.")
        if data.get("method") == M.CARD_GATEWAY and not data.get("card"):
            self.add_error("card", "Choose the card on file to charge.")
        self.new_card_clean(data)
        if data.get("method_2") and data.get("method") == LATER:
            self.add_error("method_2", "Choose how the first part is paid, or leave this empty.")
        elif data.get("method_2") and not data.get("amount_2"):
            self.add_error("amount_2", "Enter how much is paid this second way.")
        elif data.get("amount_2") and not data.get("method_2"):
            self.add_error("method_2", "Choose how the second amount is paid.")
        elif data.get("method_2") and data.get("method_2") == data.get("method"):
            self.add_error(
                "method_2", "Choose a different way from the first, or put it all in one amount."
            )
        return data

    def cart(self, *, new_card=None) -> Cart:
        """`new_card`: the new card kept on file, for a membership paid automatically."""
        d = self.cleaned_data
        other = None
        if (
            d.get("other_description")
            and d.get("other_price") is not None
            and d.get("other_category")
        ):
            other = LineInput(
                description=d["other_description"],
                unit_price_minor=d["other_price"],
                income_category_id=d["other_category"].pk,
                tax_ids=[],
            )
        return Cart(
            packages=[d[f"package_{i}"] for i in range(PACKAGE_SLOTS) if d.get(f"package_{i}")],
            products=[
                (d[f"product_{i}"], d.get(f"quantity_{i}") or 1)
                for i in range(PRODUCT_SLOTS)
                if d.get(f"product_{i}")
            ],
            other=other,
            sold_by=d.get("sold_by"),
            intro_override=bool(d.get("intro_override")),
            memberships=self._memberships(new_card),
            gift_cards=[
                GiftCardLine(
                    amount_minor=d["new_gift_card_amount"],
                    code=d.get("new_gift_card_code") or "",
                    recipient_name=d.get("new_gift_card_recipient") or "",
                    recipient_email=d.get("new_gift_card_email") or "",
                )
            ]
            if (d.get("new_gift_card_amount") or 0) > 0
            else [],
        )

    def _memberships(self, new_card) -> list[MembershipLine]:
        d = self.cleaned_data
        if not d.get("membership"):
            return []
        automatic = d.get("membership_payment") == Pass.PaymentMode.AUTOMATIC
        card = (new_card if d.get("method") == NEW_CARD else d.get("card")) if automatic else None
        return [
            MembershipLine(
                template=d["membership"],
                start_date=d.get("membership_start"),
                payment_mode=d.get("membership_payment") or Pass.PaymentMode.MANUAL,
                card=card,
            )
        ]

    def totals_params(self) -> str:
        """The fields the live totals are sent (what is sold; never the card's)."""
        names = [f"package_{i}" for i in range(PACKAGE_SLOTS)] + [
            "membership",
            "membership_start",
            "new_gift_card_amount",
        ]
        names += [f"{n}_{i}" for i in range(PRODUCT_SLOTS) for n in ("product", "quantity")]
        return ",".join(names + ["other_description", "other_price", "other_category"])

    def cart_for_totals(self) -> Cart:
        """What the live totals add up: each item whose fields are valid so far (the rest of the
        form is checked when it is submitted)."""
        self.is_valid()
        return self.cart()

    def keeps_new_card(self) -> bool:
        """The new card also pays a membership's later cycles: it is kept on file."""
        d = self.cleaned_data
        return (
            bool(d.get("membership"))
            and d.get("membership_payment") == Pass.PaymentMode.AUTOMATIC
            and d.get("method") == NEW_CARD
        )

    def pays_now(self) -> bool:
        return self.cleaned_data["method"] != LATER

    def tenders(self, *, owing: int) -> list[Tender]:
        """What the patient pays: the second tender (at the desk) first, then the first, whose blank
        amount is the rest of what is owing. A card is last:
        it is charged after the sale commits."""
        d = self.cleaned_data
        out = []
        if d.get("method_2"):
            out.append(
                Tender(
                    method=d["method_2"],
                    amount_minor=d["amount_2"],
                    reference=d.get("reference", ""),
                    gift_card_code=d.get("gift_card_code", ""),
                )
            )
        second = d.get("amount_2") or 0 if d.get("method_2") else 0
        amount = max(owing - second, 0) if d.get("amount") is None else d["amount"]
        if amount:
            out.append(
                Tender(
                    method=d["method"],
                    amount_minor=amount,
                    reference=d.get("reference", ""),
                    gift_card_code=d.get("gift_card_code", ""),
                    card=d.get("card"),
                )
            )
        return out
