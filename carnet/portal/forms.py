from django import forms


class PayBalanceForm(forms.Form):
    """The card form of the Pay Balance page. Field names match the gateway's error fields."""

    form_key = forms.CharField(widget=forms.HiddenInput)
    holder = forms.CharField(label="Name on card", max_length=120,
                             widget=forms.TextInput(attrs={"autocomplete": "cc-name"}))
    number = forms.CharField(label="Card number", max_length=30, widget=forms.TextInput(
        attrs={"autocomplete": "cc-number", "inputmode": "numeric", "placeholder": "4242 4242 4242 4242"}))
    exp_month = forms.IntegerField(label="Expiry month", min_value=1, max_value=12, widget=forms.NumberInput(
        attrs={"autocomplete": "cc-exp-month", "placeholder": "MM"}))
    exp_year = forms.IntegerField(label="Expiry year", min_value=0, max_value=2099, widget=forms.NumberInput(
        attrs={"autocomplete": "cc-exp-year", "placeholder": "YYYY"}))
    # Never echoed back into the page.
    cvc = forms.CharField(label="Security code (CVC)", max_length=4, widget=forms.PasswordInput(
        attrs={"autocomplete": "cc-csc", "inputmode": "numeric"}))


class GiftCardBuyForm(PayBalanceForm):
    """Buy a gift card online: who it is for and how much, then the card details."""

    recipient_name = forms.CharField(label="Recipient's name", max_length=120, required=False)
    recipient_email = forms.EmailField(label="Recipient's email", help_text="The gift card's code is emailed here.")

    def __init__(self, *args, currency: str, **kwargs):
        from carnet.core.forms import MoneyField

        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")
        self.order_fields(["form_key", "amount", "recipient_name", "recipient_email"])
