"""Forms for the staff pages about sold passes: sell, expiry, refund, transfer, sharing."""

from django import forms

from carnet.billing.forms import CreditQuestion, location_choice
from carnet.billing.models import Payment
from carnet.core.forms import DayField, MoneyField
from carnet.passes.documents import holds_text
from carnet.passes.models import PassTemplate
from carnet.passes.setup.forms import intro_override_add
from carnet.people.models import Patient, StaffMember

# Taken in person at the desk; a card on file or online is charged elsewhere (no network call
# inside the sale's transaction), and gift cards are redeemed with their code.
PAY_NOW_METHODS = [
    (v, label)
    for v, label in Payment.Method.choices
    if v in ("cash", "debit", "card_manual", "etransfer", "other")
]
DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _template_label(clinic):
    def label(t: PassTemplate) -> str:
        uses = holds_text(t)
        expiry = (
            f"expires after {t.expiry_value} {t.get_expiry_unit_display()}"
            if t.expiry_value
            else "never expires"
        )
        return f"{t.name} — {clinic.money(t.price_minor)}, {uses}, {expiry}"

    return label


class SellForm(CreditQuestion, forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    template = forms.ModelChoiceField(
        queryset=None, label="Package", empty_label="Choose a package"
    )
    expiry = forms.ChoiceField(
        label="Expiry",
        initial="default",
        widget=forms.RadioSelect,
        choices=[
            ("default", "The package's default"),
            ("date", "On the date below"),
            ("never", "Never expires"),
        ],
    )
    expires_on = DayField(
        required=False,
        label="Expiry date",
        widget=DATE,
        help_text="Used when “On the date below” is chosen.",
    )
    sold_by = forms.ModelChoiceField(
        queryset=None, required=False, label="Sold by (upfront compensation)", empty_label="No one"
    )
    pay = forms.ChoiceField(
        label="Payment",
        initial="now",
        widget=forms.RadioSelect,
        choices=[
            ("now", "Take payment now"),
            ("later", "Later (it stays owing on the Billing tab)"),
        ],
    )
    method = forms.ChoiceField(choices=PAY_NOW_METHODS, initial="cash", label="Method")
    reference = forms.CharField(required=False, max_length=120)

    def __init__(self, *args, clinic, staff=None, **kwargs):
        super().__init__(*args, **kwargs)
        location_choice(self, staff=staff)
        intro_override_add(self, staff)
        field = self.fields["template"]
        field.queryset = PassTemplate.objects.filter(kind=PassTemplate.Kind.PACKAGE, archived=False)
        field.label_from_instance = _template_label(clinic)
        self.fields["sold_by"].queryset = StaffMember.objects.filter(is_active=True).order_by(
            "display_name"
        )
        self.fields["amount"] = MoneyField(
            currency=clinic.currency,
            required=False,
            label="Amount received",
            help_text="Blank: the invoice's total.",
        )
        self.order_fields(
            [
                "form_key",
                "template",
                "location",
                "expiry",
                "expires_on",
                "sold_by",
                "intro_override",
                "pay",
                "method",
                "amount",
            ]
        )

    def clean(self):
        data = super().clean()
        if data.get("expiry") == "date" and not data.get("expires_on"):
            self.add_error("expires_on", "Enter the expiry date, or choose the default or “never”.")
        return data

    def expires_on_choice(self):
        """What package_sell takes: "default", a date, or None (never)."""
        d = self.cleaned_data
        return {"default": "default", "date": d.get("expires_on"), "never": None}[d["expiry"]]


class ExpiryForm(forms.Form):
    expires_on = DayField(required=False, label="Expires on", widget=DATE)
    clear = forms.BooleanField(required=False, label="Never expires (clear the date)")

    def clean(self):
        data = super().clean()
        if not data.get("clear") and not data.get("expires_on") and not self.errors:
            raise forms.ValidationError("Enter a date, or tick “Never expires”.")
        return data


class RefundStepOneForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    detach_future = forms.BooleanField(required=False, label="Detach from future appointments")
    reason = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"] = MoneyField(
            currency=currency, label="Amount to refund", help_text="From 0 to what was collected."
        )
        self.order_fields(["form_key", "amount", "detach_future", "reason"])


class TransferForm(forms.Form):
    form_key = forms.CharField(widget=forms.HiddenInput)
    to_patient = forms.ModelChoiceField(
        queryset=None,
        label="Transfer to",
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the patient to transfer to."},
    )

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["to_patient"].queryset = choices
        self.fields["to_patient"].label_from_instance = lambda p: (
            f"{p.full_name} ({p.email or p.phone or '#' + str(p.pk)})"
        )


class SharesForm(forms.Form):
    patients = forms.ModelMultipleChoiceField(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Family members who may use it",
    )

    def __init__(self, *args, family, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patients"].queryset = Patient.objects.filter(pk__in=[p.pk for p in family])
        self.fields["patients"].label_from_instance = lambda p: p.full_name
