from django import forms

from carnet.clinic.selectors import clinic_get, location_default, locations_active
from carnet.core.forms import MoneyField
from carnet.gateway.selectors import cards_for_patient

from .models import Payment


def location_choice(form, *, staff=None) -> None:
    """Add the sale's location: chosen for the desk when the clinic has one (or the staff member
    works at one), required when it is a real choice. The pass sales report and
    the invoice show it."""
    active = locations_active()
    default = location_default(staff=staff)
    form.fields["location"] = forms.ModelChoiceField(
        active,
        label="Location",
        empty_label="Choose a location",
        initial=default,
        required=default is None and active.exists(),
    )
    form.fields["location"].help_text = "Where the sale is made."


class CreditQuestion:
    """Form mixin: money received beyond what is applied becomes credit only once the desk says
    so. A 5,000.00 cash typo on a 1,118.70 sale is asked about, not silently kept as 3,881.30 of
    credit. The answer is the ticked amount itself, so changing the amount asks again."""

    credit_question: int | None = None

    def credit_confirmed(self, *, received: int, applied: int) -> str | None:
        """None when nothing needs asking (or the desk said yes); otherwise the question (also
        kept on the form for the template's tick box)."""
        extra = received - applied
        if extra <= 0 or self.data.get("credit_ok") == str(extra):
            return None

        money = clinic_get().money
        self.credit_question = extra
        return (
            f"Record {money(extra)} as credit? {money(received)} received is {money(extra)} more "
            f"than the {money(applied)} applied. Correct the amount, or tick “Record "
            f"{money(extra)} as the patient's credit” and save again."
        )


class CardHolderForm(forms.Form):
    """Add a card with Stripe: the name here, the card itself in Stripe's own field (Stripe.js)."""

    holder = forms.CharField(max_length=120, label="Name on card")


class CardForm(forms.Form):
    holder = forms.CharField(max_length=120, label="Name on card")
    number = forms.CharField(
        max_length=23,
        label="Card number",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "cc-number"}),
    )
    exp_month = forms.IntegerField(min_value=1, max_value=12, label="Expiry month")
    exp_year = forms.IntegerField(min_value=2000, max_value=2100, label="Expiry year")
    cvc = forms.CharField(
        max_length=4, label="CVC", widget=forms.PasswordInput(attrs={"autocomplete": "cc-csc"})
    )


NEW_CARD = "new_card"  # a card typed for this payment into the gateway's card form
CARD_DATA = ("number", "exp_month", "exp_year", "cvc")  # the test gateway's server-side form only


class NewCardFields(forms.Form):
    """A staff form's "New card" way to pay (the checkout's, Receive payment's): the configured
    gateway's own card form. With the test gateway it is server-side (the number goes to the
    gateway, Carnet keeps only its token); with Stripe the card is typed into Stripe.js's field and
    this form has no card number, expiry or CVC at all, only the SetupIntent's id."""

    holder = CardForm.base_fields["holder"]
    number = CardForm.base_fields["number"]
    exp_month = CardForm.base_fields["exp_month"]
    exp_year = CardForm.base_fields["exp_year"]
    cvc = CardForm.base_fields["cvc"]

    def new_card_setup(self, stripe_entry_for: str) -> None:
        """`stripe_entry_for`: the tag of the SetupIntent Stripe.js's field fills ("": test
        gateway)."""
        self.stripe_entry_for = stripe_entry_for
        if stripe_entry_for:
            for name in CARD_DATA:
                del self.fields[name]
        for name in self.card_names():
            self.fields[name].required = False  # only for a new card (new_card_clean)

    def card_names(self) -> tuple[str, ...]:
        return ("holder",) if self.stripe_entry_for else ("holder", *CARD_DATA)

    def new_card_fields(self):
        extra = tuple(n for n in ("keep_card",) if n in self.fields)
        return [self[n] for n in self.card_names() + extra]

    def new_card_chosen(self) -> bool:
        return self.cleaned_data.get("method") == NEW_CARD

    def new_card_clean(self, data) -> None:
        if data.get("method") != NEW_CARD:
            return
        for name in self.card_names():
            if data.get(name) in (None, ""):
                self.add_error(name, "Needed for a new card.")
        if self.stripe_entry_for and not (self.data.get("setup_intent") or "").strip():
            self.add_error(None, "Type the new card into the card field.")

    def card_entry(self) -> dict | None:
        """The new card as typed, for the gateway's card form (None unless paying by a new card)."""
        d = self.cleaned_data
        if not self.new_card_chosen():
            return None
        if self.stripe_entry_for:  # Stripe.js put the card in a SetupIntent made for this form
            return {
                "holder": d["holder"],
                "setup_intent": (self.data.get("setup_intent") or "")[:255],
                "entry_for": self.stripe_entry_for,
            }
        return {name: d[name] for name in ("number", "exp_month", "exp_year", "cvc", "holder")}


class PaymentForm(CreditQuestion, NewCardFields):
    form_key = forms.CharField(widget=forms.HiddenInput)
    method = forms.ChoiceField(
        choices=[
            *Payment.Method.choices[: Payment.Method.values.index(Payment.Method.CARD_GATEWAY) + 1],
            (NEW_CARD, "New card"),
            *Payment.Method.choices[Payment.Method.values.index(Payment.Method.CARD_GATEWAY) + 1 :],
        ],
        initial=Payment.Method.CASH,
    )
    keep_card = forms.BooleanField(
        required=False, label="Keep on file", help_text="For “New card”: to charge it again later."
    )
    card = forms.ModelChoiceField(
        queryset=None,
        required=False,
        label="Card on file",
        help_text="For “Card on file / online”.",
    )
    reference = forms.CharField(
        required=False, max_length=120, help_text="Cheque number, last digits, …"
    )
    gift_card_code = forms.CharField(
        required=False,
        max_length=40,
        label="Gift card code",
        help_text="For “Gift card”: redeem any gift card, from any purchaser.",
    )

    def __init__(
        self, *args, patient, currency: str, invoices, stripe_entry_for: str = "", **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.new_card_setup(stripe_entry_for)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount received")
        self.fields["card"].queryset = cards_for_patient(patient)
        self.fields["card"].label_from_instance = lambda c: (
            f"{c.brand_label} •••• {c.last4} ({c.exp_month:02d}/{c.exp_year})"
        )
        self.invoices = list(invoices)
        for invoice in self.invoices:
            self.fields[f"apply_{invoice.pk}"] = MoneyField(
                currency=currency, required=False, label=f"Apply to #{invoice.number}"
            )
        self.order_fields(["form_key", "method", "amount", "gift_card_code", "card", "reference"])

    def keeps_new_card(self) -> bool:
        return self.new_card_chosen() and bool(self.cleaned_data.get("keep_card"))

    def apply_rows(self):
        return [(invoice, self[f"apply_{invoice.pk}"]) for invoice in self.invoices]

    def allocations(self):
        return [
            (inv, self.cleaned_data[f"apply_{inv.pk}"])
            for inv in self.invoices
            if self.cleaned_data.get(f"apply_{inv.pk}")
        ]

    def clean(self):
        data = super().clean()
        if data.get("method") == Payment.Method.CARD_GATEWAY and not data.get("card"):
            self.add_error("card", "Choose a card on file to charge.")
        self.new_card_clean(data)
        # Asked only while something is owing: with nothing to apply to, the page already says
        # the whole payment becomes credit (a deliberate prepayment).
        if self.invoices and data.get("amount") and not self.errors:
            question = self.credit_confirmed(
                received=data["amount"], applied=sum(a for _, a in self.allocations())
            )
            if question:
                raise forms.ValidationError(question)
        return data


class RefundForm(forms.Form):
    # Optional so older forms still work; with it a double submit or a retry refunds once.
    form_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=100)
    method = forms.ChoiceField(
        choices=[("", "Original method")] + list(Payment.Method.choices), required=False
    )
    reason = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")
