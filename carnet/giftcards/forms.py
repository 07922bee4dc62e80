from django import forms

from carnet.billing.models import Payment
from carnet.core.forms import MoneyField
from carnet.people.models import Patient

# A load is paid in person; the gift card itself and a card on file (API only) are left out.
LOAD_METHODS = [
    (v, label) for v, label in Payment.Method.choices if v not in ("gift_card", "card_gateway")
]


def _patients():
    return Patient.objects.order_by("last_name", "first_name")


class GiftCardForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    code = forms.CharField(
        max_length=40, help_text="At least 6 characters, no spaces, not starting with 0."
    )
    purchaser = forms.ModelChoiceField(
        queryset=None, required=False, help_text="The patient paying for the card."
    )
    method = forms.ChoiceField(choices=LOAD_METHODS, initial="cash")
    reference = forms.CharField(required=False, max_length=120)
    recipient_name = forms.CharField(required=False, max_length=120)
    recipient_email = forms.EmailField(required=False)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purchaser"].queryset = _patients()
        self.fields["amount"] = MoneyField(
            currency=currency, label="Amount to load", required=False
        )
        self.order_fields(["form_key", "code", "amount", "purchaser", "method"])


class ReloadForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    payer = forms.ModelChoiceField(queryset=None)
    method = forms.ChoiceField(choices=LOAD_METHODS, initial="cash")

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["payer"].queryset = _patients()
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")
        self.order_fields(["form_key", "amount", "payer", "method"])


class TransferForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    target_code = forms.CharField(max_length=40, label="To card (code)")

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")


class RefundForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    reason = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")
        self.order_fields(["form_key", "amount", "reason"])


class NotesForm(forms.Form):
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
