from django import forms

from carnet.clinic.models import IncomeCategory, Product
from carnet.core.forms import MoneyField
from carnet.gateway.selectors import cards_for_patient

from .models import Payment

PRODUCT_SLOTS = 3


class PurchaseForm(forms.Form):
    """Up to three products and one manual line, sold on one invoice."""

    form_key = forms.CharField(widget=forms.HiddenInput)
    manual_description = forms.CharField(required=False, max_length=200, label="Other item")
    manual_category = forms.ModelChoiceField(IncomeCategory.objects.all(), required=False, label="Income category")

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        products = Product.objects.filter(is_active=True)
        for i in range(PRODUCT_SLOTS):
            self.fields[f"product_{i}"] = forms.ModelChoiceField(products, required=False, label="Product")
            self.fields[f"quantity_{i}"] = forms.IntegerField(min_value=1, max_value=1000, initial=1, required=False,
                                                              label="Qty")
        self.fields["manual_price"] = MoneyField(currency=currency, required=False, label="Price")
        self.order_fields(["form_key"] + [f for i in range(PRODUCT_SLOTS) for f in (f"product_{i}", f"quantity_{i}")])

    def product_rows(self):
        return [(self[f"product_{i}"], self[f"quantity_{i}"]) for i in range(PRODUCT_SLOTS)]

    def clean(self):
        data = super().clean()
        has_product = any(data.get(f"product_{i}") for i in range(PRODUCT_SLOTS))
        manual = data.get("manual_description") or data.get("manual_price") is not None
        if manual and (not data.get("manual_description") or data.get("manual_price") is None
                       or not data.get("manual_category")):
            raise forms.ValidationError("For another item give its description, price and income category.")
        if not has_product and not manual:
            raise forms.ValidationError("Choose at least one product, or describe another item.")
        return data


class PaymentForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    method = forms.ChoiceField(choices=Payment.Method.choices, initial=Payment.Method.CASH)
    card = forms.ModelChoiceField(queryset=None, required=False, label="Card on file",
                                  help_text="For “Card on file / online”.")
    reference = forms.CharField(required=False, max_length=120, help_text="Cheque number, last digits, …")
    gift_card_code = forms.CharField(required=False, max_length=40, label="Gift card code",
                                     help_text="For “Gift card”: redeem any gift card, from any purchaser.")

    def __init__(self, *args, patient, currency: str, invoices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount received")
        self.fields["card"].queryset = cards_for_patient(patient)
        self.fields["card"].label_from_instance = lambda c: f"{c.brand_label} •••• {c.last4} ({c.exp_month:02d}/{c.exp_year})"
        self.invoices = list(invoices)
        for invoice in self.invoices:
            self.fields[f"apply_{invoice.pk}"] = MoneyField(currency=currency, required=False,
                                                            label=f"Apply to #{invoice.number}")
        self.order_fields(["form_key", "method", "amount", "gift_card_code", "card", "reference"])

    def apply_rows(self):
        return [(invoice, self[f"apply_{invoice.pk}"]) for invoice in self.invoices]

    def allocations(self):
        return [(inv, self.cleaned_data[f"apply_{inv.pk}"]) for inv in self.invoices
                if self.cleaned_data.get(f"apply_{inv.pk}")]


class RefundForm(forms.Form):
    # Optional so older forms still work; with it a double submit or a retry refunds once.
    form_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=100)
    method = forms.ChoiceField(choices=[("", "Original method")] + list(Payment.Method.choices), required=False)
    reason = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(currency=currency, label="Amount")


class CardForm(forms.Form):
    holder = forms.CharField(max_length=120, label="Name on card")
    number = forms.CharField(max_length=23, label="Card number",
                             widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "cc-number"}))
    exp_month = forms.IntegerField(min_value=1, max_value=12, label="Expiry month")
    exp_year = forms.IntegerField(min_value=2000, max_value=2100, label="Expiry year")
    cvc = forms.CharField(max_length=4, label="CVC", widget=forms.PasswordInput(attrs={"autocomplete": "cc-csc"}))
