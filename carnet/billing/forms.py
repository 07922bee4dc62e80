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


class PaymentForm(CreditQuestion, forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    method = forms.ChoiceField(choices=Payment.Method.choices, initial=Payment.Method.CASH)
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

    def __init__(self, *args, patient, currency: str, invoices, **kwargs):
        super().__init__(*args, **kwargs)
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
