from django import forms

from carnet.core.forms import MoneyField


class PayBalanceForm(forms.Form):
    """The card form of the Pay Balance page. Field names match the gateway's error fields."""

    form_key = forms.CharField(widget=forms.HiddenInput)
    holder = forms.CharField(
        label="Name on card",
        max_length=120,
        widget=forms.TextInput(attrs={"autocomplete": "cc-name"}),
    )
    number = forms.CharField(
        label="Card number",
        max_length=30,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "cc-number",
                "inputmode": "numeric",
                "placeholder": "4242 4242 4242 4242",
            }
        ),
    )
    exp_month = forms.IntegerField(
        label="Expiry month",
        min_value=1,
        max_value=12,
        widget=forms.NumberInput(attrs={"autocomplete": "cc-exp-month", "placeholder": "MM"}),
    )
    exp_year = forms.IntegerField(
        label="Expiry year",
        min_value=0,
        max_value=2099,
        widget=forms.NumberInput(attrs={"autocomplete": "cc-exp-year", "placeholder": "YYYY"}),
    )
    # Never echoed back into the page.
    cvc = forms.CharField(
        label="Security code (CVC)",
        max_length=4,
        widget=forms.PasswordInput(attrs={"autocomplete": "cc-csc", "inputmode": "numeric"}),
    )


CARD_FIELDS = (
    "number",
    "exp_month",
    "exp_year",
    "cvc",
)  # typed into Stripe.js instead when Stripe is on


class GiftCardBuyForm(PayBalanceForm):
    """Buy a gift card online: who it is for and how much, then the card details."""

    recipient_name = forms.CharField(label="Recipient's name", max_length=120, required=False)
    recipient_email = forms.EmailField(
        label="Recipient's email", help_text="The gift card's code is emailed here."
    )

    def __init__(self, *args, currency: str, stripe: bool = False, **kwargs):

        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")
        self.order_fields(["form_key", "amount", "recipient_name", "recipient_email"])
        if stripe:  # the card goes into Stripe's own field (Stripe.js), never into this form
            for name in CARD_FIELDS:
                del self.fields[name]


class StripeCardForm(forms.Form):
    """The card form when Stripe takes the card (SAQ A): the number, expiry and CVC are typed into
    Stripe's own field (Stripe.js) and go to Stripe; Carnet gets back only the SetupIntent's id (a
    plain `setup_intent` input the page's script fills, always empty when the
    page is shown again)."""

    form_key = forms.CharField(widget=forms.HiddenInput)
    holder = forms.CharField(
        label="Name on card",
        max_length=120,
        widget=forms.TextInput(attrs={"autocomplete": "cc-name"}),
    )
